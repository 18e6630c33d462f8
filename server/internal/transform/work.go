package transform

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// work reads the header, checks it against the limits, waits for the
// memory its decoding needs and for a worker, then transforms. Waiting and
// working each get ProcessTimeout; the work's clock starts with the work.
// When the original can be served instead (keepable), work that cannot pay
// is refused with errNotWorthIt, and an animated original with
// errAnimated, before either waits for anything.
func (s *Service) work(ctx context.Context, ticket *workpool.Ticket, data []byte, ch choices, keepable bool) (Output, variant.Spec, error) {
	info, err := s.probe(data)
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	if info.Animated() {
		animation, ok := s.animation(info, ch.specs)
		if !ok && ch.forAnimation != nil {
			animation, ok = s.animation(info, ch.forAnimation)
		}
		switch {
		case ok:
			ch = choices{specs: []variant.Spec{animation}}
		case keepable:
			return Output{}, variant.Spec{}, fmt.Errorf("%w (%d frames)", errAnimated, info.Frames)
		default: // Transform: the first frame, a still image
			info.Frames = 1
		}
	}
	if !info.Alpha {
		ch.forTranslucent = nil // nothing to decide: the image is opaque
	}
	made, need, err := s.makeable(ticket, info, ch)
	if keepable {
		// What will be made (a fallback, perhaps), or else what was asked
		// for: keeping the original answers before any refusal does.
		specs := ch.specs
		if err == nil {
			specs = made.specs
		}
		if err := s.cannotPay(data, info, specs); err != nil {
			return Output{}, variant.Spec{}, err
		}
	}
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	ch = made
	waitCtx, cancel := context.WithTimeout(ctx, s.cfg.ProcessTimeout)
	defer cancel()
	if err := ticket.HoldPixels(waitCtx, need); err != nil {
		if errors.Is(err, workpool.ErrTooBig) {
			return Output{}, variant.Spec{}, fmt.Errorf("%w: decoding %d×%d pixels needs about %d MiB, the memory budget is smaller: %w", ErrTooLarge, info.Width, info.Height, need>>20, err)
		}
		return Output{}, variant.Spec{}, overloaded(ctx, "memory", err)
	}
	defer ticket.DropPixels()
	stopWork, err := ticket.Run(waitCtx)
	if err != nil {
		return Output{}, variant.Spec{}, overloaded(ctx, "a worker", err)
	}
	defer stopWork()
	workCtx, cancel := context.WithTimeout(ctx, s.cfg.ProcessTimeout)
	defer cancel()
	return s.process(workCtx, data, info, ch)
}

// makeable narrows ch to the specs the service can make of the image, and
// says what their work holds at most (see storable and affordable). When a
// negotiated format can make none (an AVIF past its format's size, or
// whose work is past the memory budget), the first of its fallbacks that
// can stands in for it: what a viewer that decodes less gets (a PNG, for a
// translucent image, where that is a JPEG). Without one, the format's own
// refusal stands.
func (s *Service) makeable(ticket *workpool.Ticket, info ImageInfo, ch choices) (choices, int64, error) {
	specs, err := s.storable(info, ch.specs)
	var need int64
	if err == nil {
		specs, need = s.affordable(ticket, info, choices{specs: specs, forTranslucent: ch.forTranslucent})
		if ticket.Affords(need) {
			ch.specs = specs
			return ch, need, nil
		}
	}
	for _, fb := range ch.fallbacks {
		if !info.Alpha {
			fb.forTranslucent = nil
		}
		kept, serr := s.storable(info, fb.specs)
		if serr != nil {
			continue
		}
		if kept, n := s.affordable(ticket, info, choices{specs: kept, forTranslucent: fb.forTranslucent}); ticket.Affords(n) {
			s.obs.FellBack(ch.specs[0].Format, fb.specs[0].Format)
			fb.specs = kept
			return fb, n, nil
		}
	}
	if err != nil {
		return choices{}, 0, err
	}
	ch.specs = specs
	return ch, need, nil // past the budget: HoldPixels refuses it
}

// affordable keeps the specs whose work fits the whole pixel budget, when
// any does, so that "best" compares the formats the service can make of
// the image (a same-size auto-quality AVIF of a 24 MP photo needs more than
// the default budget, its JPEG and WebP do not), and says what the work
// holds at most: the most any kept spec needs, as one format is searched
// and encoded at a time. When none fits, it keeps them all, with the
// first's need, which the budget then refuses as too large.
func (s *Service) affordable(ticket *workpool.Ticket, info ImageInfo, ch choices) ([]variant.Spec, int64) {
	need := func(spec variant.Spec) int64 {
		if ch.forTranslucent != nil {
			spec.AutoQuality = true // prepared whole to look at its alpha (process)
		}
		return s.proc.Footprint(Operation{Spec: spec, Source: info})
	}
	var kept []variant.Spec
	var most int64
	for _, spec := range ch.specs {
		if n := need(spec); ticket.Affords(n) {
			kept = append(kept, spec)
			most = max(most, n)
		}
	}
	if len(kept) == 0 {
		return ch.specs, need(ch.specs[0])
	}
	return kept, most
}

// animation is the spec an animated image is encoded with: the first of
// specs that keeps its frames (ImageInfo.AnimatesAs: WebP), when they hold
// no more pixels together than a still source may, and the format can
// store a frame of the variant's size.
func (s *Service) animation(info ImageInfo, specs []variant.Spec) (variant.Spec, bool) {
	i := slices.IndexFunc(specs, func(spec variant.Spec) bool { return info.AnimatesAs(spec.Format) })
	if i < 0 || info.Pixels()*int64(info.Frames) > s.cfg.Limits.MaxSourcePixels ||
		s.proc.Fits(Operation{Spec: specs[i], Source: info}) != nil {
		return variant.Spec{}, false
	}
	return specs[i], true
}

// animatedAutoQuality searches the quality of an animation on its first
// frame (the search judges one picture, and the first frame is what shows
// before the animation plays, and where it stops), then encodes every frame
// at that quality. The result reports the first frame's score.
func (s *Service) animatedAutoQuality(ctx context.Context, data []byte, info ImageInfo, spec variant.Spec) (Output, variant.Spec, error) {
	first, err := s.proc.Prepare(data, Operation{Spec: spec, Source: info})
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	found, chosen, err := s.autoQuality(ctx, first, []variant.Spec{spec})
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	out, err := s.proc.Process(data, Operation{Spec: chosen, Source: info})
	out.Score = found.Score
	return out, chosen, err
}

// storable keeps the specs whose format can store the output, judged from
// the header alone, so that an image no candidate can hold (a page 20,000
// pixels long, asked for in AVIF) is refused before it waits for memory or
// a worker and before it is decoded; "best" compares the others. It fails
// with the first refusal when none is left.
func (s *Service) storable(info ImageInfo, specs []variant.Spec) ([]variant.Spec, error) {
	var fit []variant.Spec
	var refusal error
	for _, spec := range specs {
		if err := s.proc.Fits(Operation{Spec: spec, Source: info}); err != nil {
			refusal = cmp.Or(refusal, err)
			continue
		}
		fit = append(fit, spec)
	}
	if len(fit) == 0 {
		return nil, refusal
	}
	return fit, nil
}

// probe reads the header and checks it against the limits.
func (s *Service) probe(data []byte) (ImageInfo, error) {
	if len(data) == 0 {
		return ImageInfo{}, fmt.Errorf("%w: the image is empty (0 bytes)", ErrUnsupportedImage)
	}
	info, err := s.proc.Probe(data)
	if err != nil {
		return ImageInfo{}, err
	}
	if info.Pixels() > s.cfg.Limits.MaxSourcePixels {
		return ImageInfo{}, fmt.Errorf("%w: %d×%d is %d pixels, the limit is %d", ErrTooLarge, info.Width, info.Height, info.Pixels(), s.cfg.Limits.MaxSourcePixels)
	}
	return info, nil
}

// process encodes: one fixed spec directly, or, with auto quality, each
// candidate format at the lowest quality meeting its target, keeping the
// smallest. Where a translucent image would be flattened (ch.forTranslucent,
// set only for an image with an alpha band), the image is prepared first to
// see whether any pixel is below opaque, and such an image is encoded as
// that spec (PNG) instead: with auto quality, its palette searched. It
// returns the output and the spec that produced it (with the quality
// chosen).
func (s *Service) process(ctx context.Context, data []byte, info ImageInfo, ch choices) (out Output, chosen variant.Spec, err error) {
	if err := ctx.Err(); err != nil {
		return Output{}, variant.Spec{}, err
	}
	ctx, end := s.stage(ctx, "process")
	defer func() { end(err) }()
	spec := ch.specs[0]
	if !spec.AutoQuality && ch.forTranslucent == nil {
		out, err := s.proc.Process(data, Operation{Spec: spec, Source: info})
		return out, spec, err
	}
	if info.AnimatesAs(spec.Format) {
		return s.animatedAutoQuality(ctx, data, info, spec)
	}
	prep, err := s.proc.Prepare(data, Operation{Spec: spec, Source: info})
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	switch {
	case ch.forTranslucent != nil && prep.Translucent():
		spec = *ch.forTranslucent
		if spec.AutoQuality {
			return s.autoQuality(ctx, prep, []variant.Spec{spec})
		}
		out, err := prep.Encode(spec)
		return out, spec, err
	case !spec.AutoQuality:
		out, err := prep.Encode(spec)
		return out, spec, err
	}
	return s.autoQuality(ctx, prep, ch.specs)
}
