package transform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/quality"
)

// Prepared is an image decoded, oriented and resized once, ready to be
// encoded at any quality and scored against itself.
type Prepared interface {
	// Encode encodes the prepared pixels with spec's format and quality.
	Encode(spec variant.Spec) (Output, error)
	// Score is the perceptual similarity (SSIMULACRA2, 100 = identical) of
	// an encoded image to the prepared pixels, as a viewer sees both. It
	// fails with ErrCannotScore for an image too small to score.
	Score(encoded []byte) (float64, error)
	// Trial is one step of the search: it encodes at spec and scores what
	// the score looks at. When that is the whole image, the encode comes
	// back, ready to serve; otherwise (a large image, judged by regions
	// encoded alone) the Output is empty and the chosen quality must be
	// encoded with Encode. It fails like Score.
	Trial(spec variant.Spec) (Output, float64, error)
	// FullChromaFrom is the quality from which an encode in format f keeps
	// its chroma at full resolution by itself (below it, only a spec with
	// FullChroma does); 0 where the quality does not decide it.
	FullChromaFrom(f variant.Format) int
	// Translucent says whether any pixel is less than opaque: such an
	// image looks different in a format without alpha (JPEG, flattened
	// onto white) wherever it is not shown on white.
	Translucent() bool
	// Pixels is the prepared image's width × height.
	Pixels() int
}

// AutoQuality tunes the perceptual quality search.
type AutoQuality struct {
	// Targets are the SSIMULACRA2 scores each format must reach: 90 is
	// visually lossless, 80 very high quality, 70 high, 50 medium. A
	// spec's TargetScore (from its preset or its request) replaces them.
	Targets map[variant.Format]float64
	// MinQuality and MaxQuality bound the search.
	MinQuality, MaxQuality int
	// Steps bounds the trials per format.
	Steps int
	// SkipJPEGAtOrBelow: a JPEG source whose estimated quality is at or
	// below this is not recompressed at its own size (it cannot pay).
	// Measured at the default target (70) on the corpus and the samples,
	// re-encoded by libjpeg with its standard tables at 1600 px: sources
	// at q40 still gave 11–17 % fewer bytes, q30 3–10 % (5 of 6 past the
	// 5 % minimum saving), q20 −5 to +5 %; the default skips from q25.
	// A source the search cannot beat is kept all the same (MinSaving);
	// the skip only spares that search.
	SkipJPEGAtOrBelow int
}

// DefaultAutoQuality is what an unset AutoQuality becomes.
var DefaultAutoQuality = AutoQuality{
	Targets:           map[variant.Format]float64{variant.FormatJPEG: 70, variant.FormatWebP: 70, variant.FormatAVIF: 70, variant.FormatPNG: 70},
	MinQuality:        40,
	MaxQuality:        95,
	Steps:             6,
	SkipJPEGAtOrBelow: 25,
}

// errNotWorthIt says the original cannot be beaten: keep it, compute nothing.
var errNotWorthIt = errors.New("recompression cannot pay")

// cannotPay refuses, with errNotWorthIt, a same-size auto-quality JPEG of a
// JPEG source whose tables say it is already at or below
// SkipJPEGAtOrBelow: no search would find a quality that saves enough.
func (s *Service) cannotPay(data []byte, info ImageInfo, specs []variant.Spec) error {
	spec := specs[0]
	if len(specs) != 1 || !spec.AutoQuality || spec.Format != variant.FormatJPEG || spec.Width != 0 || spec.Height != 0 || info.Format != "jpeg" {
		return nil
	}
	if q, ok := quality.EstimateJPEGQuality(data); ok && q <= s.cfg.Auto.SkipJPEGAtOrBelow {
		return fmt.Errorf("%w: the source is already JPEG quality %d", errNotWorthIt, q)
	}
	return nil
}

// Scored reports what the search chose.
type Scored struct {
	Spec  variant.Spec
	Score float64
}

// autoQuality encodes each candidate format at the lowest quality whose
// score meets the format's target (at most Steps trials, see search) and
// returns the smallest result that meets its target. A format that cannot
// meet it even at the top of the range (WebP, whose chroma is always
// subsampled, on an image of fine colour detail) loses to one that can,
// however small; when none can, the highest score wins. The candidates are
// those that can store the image's size (work left the others out, from
// the header), less JPEG for a translucent image when another keeps its
// alpha (keepingAlpha).
//
// Once a format has met its target, the next is searched only while half
// of the time ctx had when the searches began is left: each is budgeted
// on its own, and three of them on content as costly as colour noise took
// 22 s of the 30 s here, so on a slower machine the last would run past
// the deadline and fail the whole build (again at every retry) with an
// answer already in hand. The formats left out are still recorded as
// compared: the variant is the best found in the time.
func (s *Service) autoQuality(ctx context.Context, prep Prepared, specs []variant.Spec) (Output, variant.Spec, error) {
	timeLeft := halfTimeLeft(ctx)
	var best candidateResult
	formats := keepingAlpha(specs, prep)
	for i, spec := range formats {
		if best.met && !timeLeft() {
			trace.SpanFromContext(ctx).AddEvent("out of time for more formats", trace.WithAttributes(
				attribute.Int("formats_left", len(formats)-i), attribute.String("kept", best.spec.Format.String())))
			break
		}
		toBeat := 0 // only a result that meets its target sets a size to beat
		if best.met {
			toBeat = len(best.out.Data)
		}
		out, chosen, err := s.search(ctx, prep, spec, toBeat)
		switch {
		case errors.Is(err, errCannotWin): // only once best has a result
			continue
		case err != nil:
			return Output{}, variant.Spec{}, err
		}
		// An unscored result (too small to score, or lossless) is taken
		// as meeting its target.
		r := candidateResult{out: out, spec: chosen, met: out.Score == 0 || out.Score >= s.target(spec)}
		if best.out.Data == nil || r.beats(best) {
			best = r
		}
	}
	if best.out.Data == nil { // never stores an empty variant, whatever the candidates
		return Output{}, variant.Spec{}, fmt.Errorf("auto-quality: none of %d candidates gave a result", len(specs))
	}
	return best.out, best.spec, nil
}

// keepingAlpha leaves JPEG out of a comparison of formats ("best") when
// the image is translucent and another candidate keeps alpha. The score
// cannot tell them apart: it judges every output as a viewer sees it on
// white, where a flattened JPEG looks right; on any other background it
// is the image in a white box. A viewer of JPEG alone gets PNG instead
// (choices.forTranslucent, see process); an image that only JPEG, of the
// formats the viewer accepts, can store is still the JPEG.
func keepingAlpha(specs []variant.Spec, prep Prepared) []variant.Spec {
	if len(specs) < 2 || !prep.Translucent() {
		return specs
	}
	withAlpha := slices.DeleteFunc(slices.Clone(specs), func(s variant.Spec) bool { return s.Format == variant.FormatJPEG })
	if len(withAlpha) == 0 {
		return specs
	}
	return withAlpha
}

// candidateResult is one format's answer to an auto-quality search.
type candidateResult struct {
	out  Output
	spec variant.Spec
	met  bool // its score meets the format's target
}

// beats orders the answers of "best": one that meets its target before
// one that does not; then the smaller, if both meet theirs, or else the
// higher score (the closer to the target), then the smaller.
func (r candidateResult) beats(o candidateResult) bool {
	switch {
	case r.met != o.met:
		return r.met
	case !r.met && r.out.Score != o.out.Score:
		return r.out.Score > o.out.Score
	}
	return len(r.out.Data) < len(o.out.Data)
}

// target is the SSIMULACRA2 score a search for spec must reach: the
// spec's own (from its preset or request), or the format's.
func (s *Service) target(spec variant.Spec) float64 {
	if spec.TargetScore > 0 {
		return float64(spec.TargetScore)
	}
	return s.cfg.Auto.Targets[spec.Format]
}

// errCannotWin ends the search of a format that cannot beat the smallest
// result another format already has.
var errCannotWin = errors.New("auto-quality: this format cannot be the smallest")

// search bisects the quality range for one format. It stops between
// trials once ctx is done (a trial itself runs to its end inside libvips).
// With toBeat > 0 (the bytes of another format's result, for "best"), a
// whole-image trial that falls short of the target in as many bytes or
// more ends it with errCannotWin: every quality that could pass is higher,
// and takes more bytes.
func (s *Service) search(ctx context.Context, prep Prepared, spec variant.Spec, toBeat int) (Output, variant.Spec, error) {
	find := s.searchQuality
	if spec.Format == variant.FormatPNG {
		find = s.searchPalette
	}
	out, chosen, trials, err := find(ctx, prep, spec, toBeat)
	if err == nil && trials > 0 {
		s.obs.Searched(chosen.Format, trials, chosen.Quality, out.Score)
	}
	return out, chosen, err
}

// halfTimeLeft returns a check of whether half of the time ctx has now is
// still left (always true without a deadline). Work that could only improve
// an answer already in hand starts only while it is, so that on a slower
// machine it cannot run past the deadline and fail the build instead.
func halfTimeLeft(ctx context.Context) func() bool {
	deadline, bounded := ctx.Deadline()
	half := time.Until(deadline) / 2
	return func() bool { return !bounded || time.Until(deadline) >= half }
}

// searchQuality is search for a lossy format; it also returns how many
// trials it made.
//
// An image of fine colour detail (saturated edges, coloured text, colour
// noise) may reach the target only where the encoder stops subsampling
// chroma (Prepared.FullChromaFrom: JPEG's q95 here, AVIF's q90 for
// outputs it can afford to search twice): every subsampled quality falls
// short, and the answer is the costliest encode of the range. When the
// search lands there, it searches again below that quality with full
// chroma, which reaches the target sooner: for colour noise at 480 px, a
// third fewer bytes than JPEG's q95 at the same target. That second search
// starts only while half of the time the first began with is left.
func (s *Service) searchQuality(ctx context.Context, prep Prepared, spec variant.Spec, toBeat int) (Output, variant.Spec, int, error) {
	a := s.cfg.Auto
	timeLeft := halfTimeLeft(ctx)
	r, err := s.searchRange(ctx, prep, spec, a.MinQuality, a.MaxQuality, toBeat, nil)
	if errors.Is(err, ErrCannotScore) {
		// Too small to judge: the format's default quality.
		try := spec
		try.Quality = defaultQuality(s.cfg.Defaults, spec.Format)
		enc, err := prep.Encode(try)
		return enc, try, 0, err
	}
	if err != nil {
		return Output{}, spec, r.trials, err
	}
	if from := prep.FullChromaFrom(spec.Format); r.found && !spec.FullChroma && from > a.MinQuality && r.spec.Quality >= from && fullChromaTime(ctx, timeLeft) {
		full := spec
		full.FullChroma = true
		// Every full-chroma pass below from is smaller than the answer,
		// itself a full-chroma encode at from or above, and the answer's
		// score is where that search starts from.
		f, err := s.searchRange(ctx, prep, full, a.MinQuality, from-1, len(r.out.Data), &scored{r.spec.Quality, r.out.Score})
		r.trials += f.trials
		switch {
		case err == nil && f.found:
			f.trials = r.trials
			r = f
		case err != nil && !errors.Is(err, errCannotWin):
			return Output{}, spec, r.trials, err
		}
	}
	if !r.found { // even the search's best guess fell short: the top of the range
		chosen := spec
		chosen.Quality = a.MaxQuality
		enc, err := prep.Encode(chosen)
		if err != nil {
			return Output{}, chosen, r.trials, err
		}
		// Its score says how close an unreachable target came.
		if score, err := prep.Score(enc.Data); err == nil {
			enc.Score = score
		}
		return enc, chosen, r.trials, nil
	}
	if r.out.Data == nil { // the search judged regions: encode the whole image once
		whole, err := prep.Encode(r.spec)
		whole.Score = r.out.Score
		return whole, r.spec, r.trials, err
	}
	return r.out, r.spec, r.trials, nil
}

// searchPalette is search for PNG: the lowest palette quality
// (libimagequant's, dithered, at most 256 colours) whose score meets the
// target, or else the image lossless, where no palette reaches the target
// (the gradients of a photograph), the image is too small to judge, or
// larger than maxPalettePixels. A lossless encode is unscored: it is the
// prepared image. The range is the search's for every format; a palette
// stops improving where libimagequant reaches its 256 colours (around
// quality 80).
func (s *Service) searchPalette(ctx context.Context, prep Prepared, spec variant.Spec, toBeat int) (Output, variant.Spec, int, error) {
	var r rangeSearch
	if prep.Pixels() <= maxPalettePixels {
		a := s.cfg.Auto
		var err error
		r, err = s.searchRange(ctx, prep, spec, a.MinQuality, a.MaxQuality, toBeat, nil)
		switch {
		case err != nil && !errors.Is(err, ErrCannotScore):
			return Output{}, spec, r.trials, err
		case r.found:
			return r.out, r.spec, r.trials, nil
		}
	}
	spec.Quality = 0
	out, err := prep.Encode(spec)
	return out, spec, r.trials, err
}

// maxPalettePixels bounds the PNGs whose palette is searched: a trial
// (libimagequant at its default effort, zlib, a decode to score) took
// 1.1–1.3 s at a megapixel, and up to 2 s at half of one, against 0.07 s
// for the lossless encode, and a palette's score climbs in steps, so a
// search makes 3 trials, or its 6 at worst (7.4 s for a megapixel of
// gradient; 1.2 s for 480×360 of it), fewer where the palette runs out of
// colours (searchRange).
// Translucent images served without WebP or AVIF are mostly logos and
// icons under it (724×724); a larger one stays lossless.
const maxPalettePixels = 1 << 19

// fullChromaTime is timeLeft(), with a span event when it is false.
func fullChromaTime(ctx context.Context, timeLeft func() bool) bool {
	if timeLeft() {
		return true
	}
	trace.SpanFromContext(ctx).AddEvent("out of time for a full-chroma search")
	return false
}

// rangeSearch is what a search of one quality range found.
type rangeSearch struct {
	found  bool         // a quality met the target
	out    Output       // the passing trial's encode, with its score (no data when a mosaic was judged)
	spec   variant.Spec // the passing quality
	trials int
}

// searchRange looks for the lowest quality in [lo, hi] whose score meets
// spec's target, in at most Steps trials; above, a pass known on the same
// curve (nil: none) guides the first step. It fails with ErrCannotScore
// for an image too small to score, and with errCannotWin as search says.
func (s *Service) searchRange(ctx context.Context, prep Prepared, spec variant.Spec, lo, hi, toBeat int, above *scored) (rangeSearch, error) {
	a := s.cfg.Auto
	target := s.target(spec)
	var r rangeSearch
	// The score rises with the quality, close to linearly over a few steps:
	// the search starts where the format usually meets the target, and each
	// next quality is interpolated towards the target from the closest
	// scores on either side (or the format's typical slopes while one side
	// is unknown), within the bracket still open. A pass within closeEnough
	// of the target ends it. It settles in 2 trials on most images of the
	// corpus, 3–5 at worst, where a bisection of the range takes 6.
	m := modelOf(spec.Format)
	var pass, fail, before *scored // the closest pass and fail, and the trial before the last
	var failed []byte              // the closest fail's encode, when whole
	q := min(max(m.start(target), lo), hi)
	if above != nil {
		pass = above
		q = within(m.next(pass, nil, nil, target), lo, hi)
	}
	for step := 0; step < a.Steps && lo <= hi; step++ {
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("auto-quality after %d trials: %w", r.trials, err)
		}
		try := spec
		try.Quality = q
		enc, score, err := prep.Trial(try)
		if err != nil {
			return r, err
		}
		r.trials++
		last := &scored{q, score}
		if score >= target {
			r.found, r.out, r.spec = true, enc, try
			r.out.Score = score
			pass, hi = last, q-1
			if score-target < closeEnough {
				break
			}
		} else {
			if toBeat > 0 && enc.Data != nil && len(enc.Data) >= toBeat {
				return r, errCannotWin
			}
			if spec.Format == variant.FormatPNG && enc.Data != nil && bytes.Equal(enc.Data, failed) {
				// Two qualities made the same palette: libimagequant ran
				// out of colours short of both (a gradient's 256 are not
				// enough), and any quality above asks more of the same
				// 256. The PNG stays lossless (searchPalette).
				break
			}
			fail, lo, failed = last, q+1, enc.Data
		}
		q = within(m.next(pass, fail, before, target), lo, hi)
		before = last
	}
	return r, nil
}

// within keeps the next quality in the open bracket [lo, hi]. A guess
// above it is an extrapolation past what the model vouches for (a score far
// below the target, where the codec's curve steepens): the middle of the
// bracket is tried rather than its top, the costliest encode of the range
// and rarely the answer. A guess below it tries the bottom: that encode is
// cheap, and for an easy image it is the answer.
func within(q, lo, hi int) int {
	if q > hi {
		return (lo + hi + 1) / 2
	}
	return max(q, lo)
}

// scored is one quality tried and its score.
type scored struct {
	q     int
	score float64
}

// closeEnough ends a search at a pass this close to the target: around 70
// one quality step moves a score by half a point to a point (searchModel),
// so one more step down would most likely fall short, for a trial's cost.
const closeEnough = 1.0

// searchModel is where a format's SSIMULACRA2 usually meets 70 and how
// many points one quality step moves it there: descending from a pass,
// and climbing from a fail (steeper where the format's steps are uneven,
// so that a climb lands just above the target rather than short of it).
// Fitted on the score curves of the shared corpus and the shipped samples,
// at 720 px and at full size (JPEG with mozjpeg's settings, WebP, AVIF at
// the default speed), for the fewest trials that still find the lowest
// passing quality: for JPEG (refitted for quant table 5 and progressive
// scans) 2.2 trials on average at 720 px and 2.8 at full size, 2–3 for AVIF
// and WebP, against 3–3.6 with a bisection-like start.
type searchModel struct {
	at70         int
	slope, climb float64
}

var searchModels = map[variant.Format]searchModel{
	variant.FormatJPEG: {at70: 65, slope: 0.5, climb: 0.6},
	variant.FormatWebP: {at70: 77, slope: 1.0, climb: 1.3},
	variant.FormatAVIF: {at70: 62, slope: 0.85, climb: 0.85},
	// PNG's palette: measured on four translucent images at 480 px and
	// full size, 70 is met from below quality 10 (flat graphics) to 65
	// (a smooth gradient).
	variant.FormatPNG: {at70: 60, slope: 1.0, climb: 0.8},
}

func modelOf(f variant.Format) searchModel {
	if m, ok := searchModels[f]; ok {
		return m
	}
	return searchModel{at70: 75, slope: 0.7, climb: 0.7}
}

// start is the first quality tried for a target.
func (m searchModel) start(target float64) int {
	return m.at70 + int(math.Round((target-70)/m.slope))
}

// next interpolates the quality expected to meet target between the
// closest pass and fail; with one side still unknown, it extrapolates at
// the slope seen between the last two trials when they are on the same
// side, or else at the format's typical slope.
func (m searchModel) next(pass, fail, before *scored, target float64) int {
	if pass != nil && fail != nil && pass.score > fail.score {
		f := (target - fail.score) / (pass.score - fail.score)
		return fail.q + max(1, int(math.Ceil(f*float64(pass.q-fail.q))))
	}
	if pass != nil {
		return pass.q - max(1, int((pass.score-target)/seenSlope(pass, before, m.slope)))
	}
	return fail.q + max(1, int(math.Ceil((target-fail.score)/seenSlope(fail, before, m.climb))))
}

// seenSlope is the points per quality step between two trials, within
// reason, or else the model's. A flat step between neighbours is a plateau
// or a dip and says little; across a wide gap it is the curve of an easy
// image (a graphic, a small output), which stays well above the target far
// down: it is believed at minSlope, so the next guess reaches far (the
// bottom of the range, often, whose encode is the cheapest) instead of
// creeping down at the model's slope.
func seenSlope(a, b *scored, model float64) float64 {
	if b == nil || a.q == b.q {
		return model
	}
	s := (a.score - b.score) / float64(a.q-b.q)
	switch {
	case s < minSlope && abs(a.q-b.q) >= wideGap:
		return minSlope
	case s < minSlope || s > 3*model:
		return model
	}
	return s
}

// minSlope is the shallowest slope a search believes it sees: flatter
// steps are plateaus or noise, not a trend to extrapolate, unless they span
// wideGap qualities or more.
const (
	minSlope = 0.25
	wideGap  = 8
)

func abs(n int) int { return max(n, -n) }

// defaultQuality is a format's configured quality, where the search starts.
func defaultQuality(d variant.Defaults, f variant.Format) int {
	if q, ok := d.Quality[f]; ok && q > 0 {
		return q
	}
	return 75
}
