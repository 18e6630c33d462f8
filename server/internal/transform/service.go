package transform

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/warmgo"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// Metadata keys recorded on stored variants and markers.
const (
	MetaSourceETag = "source-etag" // ETag of the original the variant was made from
	MetaWidth      = "width"
	MetaHeight     = "height"
	MetaQuality    = "quality"
	MetaScore      = "score"        // with auto quality: the SSIMULACRA2 score the search measured
	MetaChroma     = "chroma"       // "full" where the search kept chroma whole below the encoder's own switch
	MetaVariant    = "variant-size" // on markers: the size the rejected variant had
	MetaBestOf     = "best-of"      // on "best" variants: the formats compared, e.g. "avif,webp,jpeg"
	MetaKept       = "kept"         // on markers of an original no variant stands for: why ("animated")
	MetaKeptRules  = "kept-rules"   // on those markers: the rules that decided it (Service.keptRules)
	MetaServedBy   = "served-by"    // on markers of a variant the service cannot make: the key of the one that stands for it
)

// keptRulesGeneration is the generation of the rules that keep an original
// no variant stands for. A marker with a reason (MetaKept) decided under
// other rules is decided again: the first generation kept every
// animation, where the second makes an animated WebP for a WebP or AVIF
// viewer, so a deployment upgraded over its markers would otherwise serve
// those originals until they changed.
const keptRulesGeneration = "2"

// keptRules are the rules a kept marker is decided under: the generation,
// and the pixel limit an animation's frames are held to together, which
// an operator may raise (Limits.MaxSourcePixels): an animation kept under
// a lower limit is then decided again, and made.
func (s *Service) keptRules() string {
	return keptRulesGeneration + "/" + strconv.FormatInt(s.cfg.Limits.MaxSourcePixels, 10)
}

// fallbackRules are the rules a served-by marker is decided under: the
// kept rules and the pixel memory a job may hold, so that a negotiated
// AVIF the budget could not afford is made once an operator raises it.
func (s *Service) fallbackRules() string {
	return s.keptRules() + "/" + strconv.FormatInt(s.pool.PixelBudget(), 10)
}

// markerSuffix names the object that remembers "the original is smaller"
// (or which variant stands for one the service cannot make): it sits
// beside the variant's key and never ends in an image extension.
const markerSuffix = ".keep-original"

// Service implements EnsureVariant and Transform.
type Service struct {
	cfg   Config
	store Store
	proc  Processor
	pool  *workpool.Pool
	obs   Observer
	group singleflight.Group // builds
	// lookups collapses identical concurrent lookups: a hot variant asked
	// for by many callers at once costs one round of HEADs.
	lookups singleflight.Group
	// known spares a hot variant's own HEAD: only its original's is needed.
	known *knownAnswers
	// runners runs lookups and their HEADs on kept goroutines.
	runners *warmgo.Pool
	// tracer starts the stages' spans, from the TracerProvider in place
	// when the service was made (tracing is set up before).
	tracer trace.Tracer
}

// New returns a service. The pool bounds concurrent image work.
func New(cfg Config, st Store, proc Processor, pool *workpool.Pool) (*Service, error) {
	d := DefaultAutoQuality
	// A format without a target of its own has the default's.
	targets := maps.Clone(d.Targets)
	maps.Copy(targets, cfg.Auto.Targets)
	cfg.Auto.Targets = targets
	if cfg.Auto.MinQuality == 0 {
		cfg.Auto.MinQuality = d.MinQuality
	}
	if cfg.Auto.MaxQuality == 0 {
		cfg.Auto.MaxQuality = d.MaxQuality
	}
	if cfg.Auto.Steps == 0 {
		cfg.Auto.Steps = d.Steps
	}
	if cfg.Auto.SkipJPEGAtOrBelow == 0 {
		cfg.Auto.SkipJPEGAtOrBelow = d.SkipJPEGAtOrBelow
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("transform: %w", err)
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	return &Service{cfg: cfg, store: st, proc: proc, pool: pool, obs: obs, known: newKnownAnswers(cfg.KnownVariantTTL),
		runners: warmgo.New(lookupRunners, time.Minute), tracer: otel.Tracer(tracerName)}, nil
}

// EnsureResult is the answer to EnsureVariant.
type EnsureResult struct {
	Outcome Outcome
	// Key to serve: the variant's, or the original's.
	Key         string
	ContentType string
	Size        int64
	ETag        string
	// OriginalSize is the original's size in bytes.
	OriginalSize int64
	// VariantKey is the variant's deterministic key, even when not served.
	VariantKey string
	// Spec is the resolved variant.
	Spec          variant.Spec
	Width, Height int
	// Score is the SSIMULACRA2 score the auto-quality search measured for
	// the variant (0: a fixed quality, or not measured).
	Score float64
}

// candidate is one variant EnsureVariant may store: a resolved spec with a
// concrete format, and its key. "best" has one per accepted format, and a
// request whose formats cannot keep alpha one more, the PNG that answers
// for a translucent image (forTranslucent).
type candidate struct {
	spec           variant.Spec
	key            string
	forTranslucent bool
	// fallbacks, on a negotiated format's first candidate, says what
	// answers in its place when the service cannot make it (see
	// fallbackGroups); nil for none.
	fallbacks *fallbacks
}

// fallbacks are the candidates that answer for a negotiated format the
// service cannot make (an AVIF past its format's size or the memory
// budget), in order: those a viewer that decodes less gets, with their
// keys (choices.fallbacks). They are made on first use: most calls are
// hits that never need them.
type fallbacks struct {
	once   sync.Once
	make   func() [][]candidate
	groups [][]candidate
}

// fallbackGroups is c's fallbacks, made on the first call.
func (c candidate) fallbackGroups() [][]candidate {
	if c.fallbacks == nil {
		return nil
	}
	c.fallbacks.once.Do(func() { c.fallbacks.groups = c.fallbacks.make() })
	return c.fallbacks.groups
}

// servable is every variant that may answer for cands: the candidates,
// then the first's fallbacks' (made only when a candidate does not do).
func servable(cands []candidate) iter.Seq2[int, candidate] {
	return func(yield func(int, candidate) bool) {
		for i, c := range cands {
			if !yield(i, c) {
				return
			}
		}
		i := len(cands)
		for _, group := range cands[0].fallbackGroups() {
			for _, c := range group {
				if !yield(i, c) {
					return
				}
				i++
			}
		}
	}
}

// answering finds the candidate in format f, among cands and then the
// first's fallbacks, with the candidates it was chosen among (cands, or
// a fallback's), and whether it is a fallback.
func answering(cands []candidate, f variant.Format) (c candidate, among []candidate, fallback bool) {
	for i, group := range append([][]candidate{cands}, cands[0].fallbackGroups()...) {
		for _, c := range group {
			if c.spec.Format == f {
				return c, group, i > 0
			}
		}
	}
	return cands[0], cands, false
}

// bestOf names the formats a choice was made among ("" for one candidate):
// a stored variant answers a request with several candidates only if it
// was chosen among the same formats, so a JPEG made for a JPEG-only viewer
// never stands in for the WebP a WebP viewer should get, nor a JPEG made
// flattened (asked for by name) for the PNG a translucent image gets.
func bestOf(cands []candidate) string {
	if len(cands) < 2 {
		return ""
	}
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.spec.Format.String()
	}
	return strings.Join(names, ",")
}

// candidates resolves a requested variant of source into the variants to
// consider, with their keys. A GIF (by its key, which the edge sees too)
// is negotiated for an AVIF viewer as for a viewer of WebP: most GIFs are
// animations, which WebP keeps and AVIF, as libvips saves it, does not.
func (s *Service) candidates(source string, r variant.Request) ([]candidate, error) {
	if r.Viewer == variant.ClassAVIF && strings.EqualFold(path.Ext(source), ".gif") {
		r.Viewer = variant.ClassWebP
	}
	ch, err := s.cfg.resolve(r)
	if err != nil {
		return nil, err
	}
	out, err := s.keyed(source, ch)
	if err != nil || len(r.Viewer.Fallbacks()) == 0 {
		return out, err
	}
	out[0].fallbacks = &fallbacks{make: func() [][]candidate {
		var groups [][]candidate
		for _, fb := range s.cfg.fallbacksOf(r) {
			// A key too long for the store leaves its fallback out.
			if group, err := s.keyed(source, fb); err == nil {
				groups = append(groups, group)
			}
		}
		return groups
	}}
	return out, nil
}

// keyed is the candidates of ch's specs, and of its forTranslucent, with
// their keys for source.
func (s *Service) keyed(source string, ch choices) ([]candidate, error) {
	add := func(out []candidate, spec variant.Spec, forTranslucent bool) ([]candidate, error) {
		key := variant.Key(s.cfg.Prefix, source, spec)
		if err := variant.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("variant key for %q: %w", source, err)
		}
		return append(out, candidate{spec: spec, key: key, forTranslucent: forTranslucent}), nil
	}
	var out []candidate
	var err error
	for _, spec := range ch.specs {
		if out, err = add(out, spec, false); err != nil {
			return nil, err
		}
	}
	if ch.forTranslucent != nil {
		return add(out, *ch.forTranslucent, true)
	}
	return out, nil
}

// EnsureVariant makes sure the variant of bucket/key described by req is
// stored and fresh, and says what to serve. It returns only after a created
// variant is durably stored.
func (s *Service) EnsureVariant(ctx context.Context, bucket, key string, req Request) (EnsureResult, error) {
	if err := s.cfg.checkObject(bucket, key); err != nil {
		return EnsureResult{}, err
	}
	cands, err := s.candidates(key, req.Variant)
	if err != nil {
		return EnsureResult{}, err
	}
	first, err := s.sharedLookup(ctx, bucket, key, cands)
	if err != nil {
		return EnsureResult{}, err
	}
	res := first.res
	if first.done {
		s.obs.Ensured(res.Outcome, res.OriginalSize, res.Size)
		return res, nil
	}

	// Collapse identical concurrent builds into one. The build runs detached
	// from this caller's cancellation so that one impatient caller cannot fail
	// the others; each of its steps has its own clock instead (see build).
	flight := bucket + "\x00" + cands[0].key + "\x00" + strconv.Itoa(len(cands))
	if req.DryRun {
		flight += "\x00dry-run"
	}
	ch := s.group.DoChan(flight, func() (res any, err error) {
		defer caught(&err)
		return s.build(context.WithoutCancel(ctx), bucket, key, cands, first, req.DryRun)
	})
	var patience <-chan time.Time
	if req.MaxWait > 0 && !req.DryRun {
		timer := time.NewTimer(req.MaxWait)
		defer timer.Stop()
		patience = timer.C
	}
	select {
	case <-patience:
		pending := EnsureResult{Outcome: Pending, Key: key, OriginalSize: res.OriginalSize, VariantKey: cands[0].key, Spec: cands[0].spec}
		s.obs.Ensured(Pending, res.OriginalSize, res.OriginalSize)
		return pending, nil
	case r := <-ch:
		if r.Err != nil {
			return EnsureResult{}, r.Err
		}
		res := r.Val.(EnsureResult)
		s.obs.Ensured(res.Outcome, res.OriginalSize, res.Size)
		return res, nil
	case <-ctx.Done():
		return EnsureResult{}, ctx.Err()
	}
}

// build fetches the original, transforms it and stores the variant (or the
// marker saying the original is smaller), from what the caller's lookup
// found (first). It runs once per key at a time. A dry run stops before
// writing and reports what would have been stored.
//
// Each step has its own ProcessTimeout: fetching, waiting for memory and a
// worker, the work itself (whose clock starts when a worker takes it), and
// storing. Work that finished is stored, however long the queue was.
func (s *Service) build(ctx context.Context, bucket, key string, cands []candidate, first lookupAnswer, dryRun bool) (EnsureResult, error) {
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, s.cfg.ProcessTimeout) }
	fetchCtx, cancel := step()
	defer cancel()
	res, stale := first.res, first.stale
	if _, found := s.known.get(lookupID(bucket, key, cands)); found || !s.known.enabled() {
		// A build of the same variant may have finished since that lookup
		// (a herd of callers for a new image: those whose lookup ran while
		// it was storing): this service remembers what its builds stored,
		// so the lookup is repeated only when something is remembered, or
		// when nothing can be. A write from another replica is caught when
		// storing (a conditional write), at the cost of a build.
		var done bool
		var err error
		res, done, stale, err = s.lookup(fetchCtx, bucket, key, cands)
		if err != nil || done {
			return res, err
		}
	}
	if res.OriginalSize > s.cfg.Limits.MaxSourceBytes {
		return EnsureResult{}, fmt.Errorf("%w: %q is %d bytes, the limit is %d", ErrTooLarge, key, res.OriginalSize, s.cfg.Limits.MaxSourceBytes)
	}
	// Admission bounds the jobs and the memory they hold; a worker is held
	// only for the CPU work, not while fetching or storing.
	ticket, err := s.admit()
	if err != nil {
		return EnsureResult{}, err
	}
	defer ticket.Release()
	if err := s.holdBuffer(ticket, res.OriginalSize); err != nil {
		return EnsureResult{}, err
	}

	getCtx, end := s.stage(fetchCtx, "fetch")
	data, orig, err := s.store.Get(getCtx, bucket, key, s.cfg.Limits.MaxSourceBytes)
	end(err)
	if err != nil {
		return EnsureResult{}, fmt.Errorf("original: %w", err)
	}
	// The original may have been replaced by a larger one since the HEAD.
	if err := s.holdBuffer(ticket, int64(len(data))-res.OriginalSize); err != nil {
		return EnsureResult{}, err
	}
	out, chosen, err := s.work(ctx, ticket, data, choicesOf(cands), true)
	// A negotiated format whose variant does not beat the original gives
	// way to its fallbacks, in order; where none does, the original is
	// served.
	for err == nil && s.originalIsSmaller(out, orig) {
		next := fallbacksAfter(cands, chosen.Format)
		if len(next) == 0 {
			break
		}
		next[0].fallbacks = next[1:]
		s.obs.FellBack(chosen.Format, next[0].specs[0].Format)
		o, spec, err := s.work(ctx, ticket, data, next[0], true)
		if err != nil {
			break // the answer so far stands: the original
		}
		out, chosen = o, spec
	}
	storeCtx, cancel := step()
	defer cancel()
	if why, keep := keptBecause(err); keep {
		if dryRun {
			return originalResult(why.outcome(), orig, cands[0].key, cands[0].spec), nil
		}
		rules := ""
		if why != "" {
			rules = s.keptRules()
		}
		res, err := s.keepOriginal(storeCtx, bucket, cands[0].key, orig, cands[0].spec, 0, why, rules)
		if err == nil {
			s.known.remember(lookupID(bucket, key, cands), cands, orig.ETag, res)
		}
		return res, err
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", key, err)
		s.known.rememberFailure(lookupID(bucket, key, cands), orig.ETag, err)
		return EnsureResult{}, err
	}
	c, among, fallback := answering(cands, chosen.Format)
	smaller := s.originalIsSmaller(out, orig)
	if dryRun {
		if smaller {
			return originalResult(OriginalIsSmaller, orig, c.key, chosen), nil
		}
		info := store.ObjectInfo{Size: int64(len(out.Data)), Metadata: variantMetadata(out, chosen)}
		return variantResult(Created, orig, info, c.key, chosen), nil
	}
	storeCtx, end = s.stage(storeCtx, "store")
	switch {
	case smaller:
		rules := "" // decided again only when the original changes
		if fallback {
			rules = s.fallbackRules() // and when the budget might afford the format asked for
		}
		res, err = s.keepOriginal(storeCtx, bucket, cands[0].key, orig, cands[0].spec, len(out.Data), "", rules)
	case fallback:
		res, err = s.standIn(storeCtx, bucket, key, cands[0].key, c, among, orig, chosen, out)
	default:
		res, err = s.storeVariant(storeCtx, variantWrite{
			bucket: bucket, key: key, variantKey: c.key, staleETag: stale[c.key],
			orig: orig, spec: chosen, out: out, cands: cands,
		})
	}
	end(err)
	if err == nil {
		s.known.remember(lookupID(bucket, key, cands), cands, orig.ETag, res)
	}
	return res, err
}

// originalIsSmaller says whether out fails to beat the original by the
// configured margin: the original is then served.
func (s *Service) originalIsSmaller(out Output, orig store.ObjectInfo) bool {
	return float64(len(out.Data)) > float64(orig.Size)*(1-s.cfg.MinSaving)
}

// fallbacksAfter is the choices of cands' fallbacks after the candidates
// that hold format f (cands themselves, or a fallback's).
func fallbacksAfter(cands []candidate, f variant.Format) []choices {
	groups := append([][]candidate{cands}, cands[0].fallbackGroups()...)
	i := slices.IndexFunc(groups, func(group []candidate) bool {
		return slices.ContainsFunc(group, func(c candidate) bool { return c.spec.Format == f })
	})
	if i < 0 {
		return nil
	}
	var rest []choices
	for _, group := range groups[i+1:] {
		rest = append(rest, choicesOf(group))
	}
	return rest
}

// choicesOf gives back the choices candidates were made from.
func choicesOf(cands []candidate) choices {
	var ch choices
	for _, c := range cands {
		if c.forTranslucent {
			ch.forTranslucent = &c.spec
		} else {
			ch.specs = append(ch.specs, c.spec)
		}
	}
	for _, group := range cands[0].fallbackGroups() {
		ch.fallbacks = append(ch.fallbacks, choicesOf(group))
	}
	return ch
}

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

// variantWrite is a variant to store, with what decides how.
type variantWrite struct {
	bucket, key string // the original
	variantKey  string
	staleETag   string // the stale variant to replace, if any
	orig        store.ObjectInfo
	spec        variant.Spec // resolved, with the quality chosen
	out         Output
	cands       []candidate // every format compared, for "best"
}

// variantMetadata is what a variant's metadata says about its encoding.
func variantMetadata(out Output, spec variant.Spec) map[string]string {
	m := map[string]string{
		MetaWidth:   strconv.Itoa(out.Width),
		MetaHeight:  strconv.Itoa(out.Height),
		MetaQuality: strconv.Itoa(spec.Quality),
	}
	if out.Score > 0 {
		m[MetaScore] = strconv.FormatFloat(out.Score, 'f', 1, 64)
	}
	if spec.FullChroma {
		m[MetaChroma] = "full"
	}
	return m
}

// storeVariant writes the variant with a condition, so that concurrent
// writers (other replicas) cannot both win: create-if-absent for a new key,
// replace-if-unchanged for a stale one.
func (s *Service) storeVariant(ctx context.Context, w variantWrite) (EnsureResult, error) {
	opts := store.PutOptions{
		ContentType:  w.spec.Format.ContentType(),
		CacheControl: s.cfg.VariantCacheControl,
		Metadata:     variantMetadata(w.out, w.spec),
	}
	opts.Metadata[MetaSourceETag] = w.orig.ETag
	if b := bestOf(w.cands); b != "" {
		opts.Metadata[MetaBestOf] = b
	}
	if w.staleETag == "" {
		opts.IfNoneMatch = true
	} else {
		opts.IfMatch = w.staleETag
	}
	info, err := s.store.Put(ctx, w.bucket, w.variantKey, w.out.Data, opts)
	if errors.Is(err, store.ErrPreconditionFailed) {
		// Another writer won the race; serve what it stored if it is fresh.
		if res, done, _, lerr := s.lookup(ctx, w.bucket, w.key, w.cands); lerr == nil && done {
			return res, nil
		}
		return EnsureResult{}, fmt.Errorf("%w: %s: %w", ErrConflict, w.variantKey, err)
	}
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing variant: %w", err)
	}
	info.Size = int64(len(w.out.Data))
	info.Metadata = opts.Metadata
	return variantResult(Created, w.orig, info, w.variantKey, w.spec), nil
}

// standIn stores c, the fallback that stands for the variant at vkey which
// the service cannot make, as a viewer of c's format gets it (chosen
// among the same candidates, at its own key), unless a fresh one is there
// already; then the marker beside vkey that sends later lookups to it.
func (s *Service) standIn(ctx context.Context, bucket, key, vkey string, c candidate, among []candidate, orig store.ObjectInfo, spec variant.Spec, out Output) (EnsureResult, error) {
	res, done, stale, err := s.lookup(ctx, bucket, key, among)
	if err != nil {
		return EnsureResult{}, err
	}
	if !done {
		res, err = s.storeVariant(ctx, variantWrite{
			bucket: bucket, key: key, variantKey: c.key, staleETag: stale[c.key],
			orig: orig, spec: spec, out: out, cands: among,
		})
		if err != nil {
			return EnsureResult{}, err
		}
	}
	if res.Key == orig.Key {
		return res, nil // the fallback's own marker: its original is served
	}
	_, err = s.store.Put(ctx, bucket, vkey+markerSuffix, nil, store.PutOptions{
		ContentType: "application/octet-stream",
		Metadata:    map[string]string{MetaSourceETag: orig.ETag, MetaServedBy: res.Key, MetaKeptRules: s.fallbackRules()},
	})
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing the served-by marker: %w", err)
	}
	return res, nil
}

// keptReason says why an original is served rather than a variant: ""
// when no variant is smaller by the configured margin (or could be),
// "animated" when no variant can stand for it.
type keptReason string

// outcome is what a call answers for an original kept for this reason.
func (r keptReason) outcome() Outcome {
	if r == "" {
		return OriginalIsSmaller
	}
	return OriginalKept
}

// keptBecause says whether err means "serve the original", and why.
func keptBecause(err error) (keptReason, bool) {
	switch {
	case errors.Is(err, errNotWorthIt):
		return "", true
	case errors.Is(err, errAnimated):
		return "animated", true
	}
	return "", false
}

// errAnimated refuses to make a still variant of an animated original
// (for a viewer of no format that keeps the frames).
var errAnimated = errors.New("the original is animated, and a variant would be its first frame alone")

// keepOriginal remembers that the original is the answer, why, and under
// which rules it was decided ("": it holds until the original changes; see
// decidedNow).
func (s *Service) keepOriginal(ctx context.Context, bucket, vkey string, orig store.ObjectInfo, spec variant.Spec, variantSize int, why keptReason, rules string) (EnsureResult, error) {
	meta := map[string]string{
		MetaSourceETag: orig.ETag,
		MetaVariant:    strconv.Itoa(variantSize),
	}
	if why != "" {
		meta[MetaKept] = string(why)
	}
	if rules != "" {
		meta[MetaKeptRules] = rules
	}
	_, err := s.store.Put(ctx, bucket, vkey+markerSuffix, nil, store.PutOptions{
		ContentType: "application/octet-stream",
		Metadata:    meta,
	})
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing the keep-original marker: %w", err)
	}
	return originalResult(why.outcome(), orig, vkey, spec), nil
}

// Upload is an admitted Transform: its input is received chunk by chunk
// against the memory budget, then transformed. Close it when done.
type Upload struct {
	s      *Service
	req    Request
	ch     choices
	ticket *workpool.Ticket
	size   int64
}

// StartTransform validates req and admits a Transform before any of its
// input is read, so that a full service refuses it at the first message.
func (s *Service) StartTransform(req Request) (*Upload, error) {
	ch, err := s.cfg.resolve(req.Variant)
	if err != nil {
		return nil, err
	}
	ch.fallbacks = s.cfg.fallbacksOf(req.Variant)
	if req.Variant.Viewer == variant.ClassAVIF {
		// The format left to the service is AVIF, which keeps no frames:
		// an animation is answered as for a WebP viewer, as EnsureVariant
		// answers for a GIF key.
		asWebP := req.Variant
		asWebP.Viewer = variant.ClassWebP
		if alt, err := s.cfg.resolve(asWebP); err == nil {
			ch.forAnimation = alt.specs
		}
	}
	ticket, err := s.admit()
	if err != nil {
		return nil, err
	}
	return &Upload{s: s, req: req, ch: ch, ticket: ticket}, nil
}

// Receive accounts for n more input bytes about to be held in memory. It
// fails with ErrTooLarge past the source limit, and with ErrOverloaded when
// the service's buffer budget is spent.
func (u *Upload) Receive(n int) error {
	u.size += int64(n)
	if limit := u.s.MaxStreamBytes(); u.size > limit {
		return fmt.Errorf("%w: the input exceeds the stream limit of %d bytes", ErrTooLarge, limit)
	}
	return u.s.holdBuffer(u.ticket, int64(n))
}

// Transform converts the received bytes, which must be all of them.
func (u *Upload) Transform(ctx context.Context, data []byte) (Output, variant.Spec, error) {
	s, first := u.s, u.ch.specs[0]
	if int64(len(data)) != u.size {
		return Output{}, first, fmt.Errorf("transform: %d bytes received, %d accounted for", len(data), u.size)
	}
	// Transform always answers with an image: the search runs whatever
	// the source's quality.
	out, chosen, err := s.work(ctx, u.ticket, data, u.ch, false)
	if err != nil {
		return Output{}, first, err
	}
	return out, chosen, nil
}

// Close gives the upload's place and memory back.
func (u *Upload) Close() { u.ticket.Release() }

// Transform converts image bytes without touching storage: StartTransform,
// Receive and Transform in one call, for callers that hold the bytes.
func (s *Service) Transform(ctx context.Context, data []byte, req Request) (Output, variant.Spec, error) {
	up, err := s.StartTransform(req)
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	defer up.Close()
	if err := up.Receive(len(data)); err != nil {
		return Output{}, up.ch.specs[0], err
	}
	return up.Transform(ctx, data)
}

// MaxStreamBytes is the largest input Transform accepts.
func (s *Service) MaxStreamBytes() int64 {
	return cmp.Or(min(s.cfg.Limits.MaxStreamBytes, s.cfg.Limits.MaxSourceBytes), s.cfg.Limits.MaxSourceBytes)
}

// overloaded explains a wait that ended: the caller's own cancellation, or
// a wait longer than ProcessTimeout, which means the service is overloaded.
func overloaded(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: waited too long for %s (%w)", ErrOverloaded, what, err)
}

// admit takes a place for a job, failing fast when the service is full.
func (s *Service) admit() (*workpool.Ticket, error) {
	t, err := s.pool.Admit()
	if err != nil {
		return nil, fmt.Errorf("%w: %d workers busy and the queue is full", ErrOverloaded, s.pool.Workers())
	}
	return t, nil
}

// holdBuffer reserves memory for n compressed bytes, failing fast.
func (s *Service) holdBuffer(t *workpool.Ticket, n int64) error {
	err := t.HoldBuffer(n)
	switch {
	case errors.Is(err, workpool.ErrTooBig):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	return nil
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

// tracerName names the domain's spans.
const tracerName = "github.com/imgedge/imgedge/server/internal/transform"

// stage starts one step of the work: a trace span (head, fetch, process,
// store) and a timing for the Observer. Call end with the step's error.
func (s *Service) stage(ctx context.Context, name string) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := s.tracer.Start(ctx, name)
	return ctx, func(err error) {
		s.obs.Stage(name, time.Since(start))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
