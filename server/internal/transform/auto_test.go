package transform

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// curvePrepared scores a quality by a curve: what a codec's score looks
// like across its quality range, without encoding anything.
type curvePrepared struct {
	score func(q int) float64
	// palette, when set, is the quality from which every encode is the
	// same: a palette that has run out of colours.
	palette int
	trials  []int
}

func (c *curvePrepared) Encode(spec variant.Spec) (Output, error) {
	q := spec.Quality
	if c.palette > 0 {
		q = min(q, c.palette)
	}
	return Output{Data: []byte{byte(q)}}, nil
}

func (c *curvePrepared) Score(encoded []byte) (float64, error) {
	return c.score(int(encoded[0])), nil
}

// FullChromaFrom is 0: the curves have no chroma regimes.
func (c *curvePrepared) FullChromaFrom(variant.Format) int { return 0 }

func (c *curvePrepared) Translucent() bool { return false }

func (c *curvePrepared) Pixels() int { return 720 * 480 }

func (c *curvePrepared) Trial(spec variant.Spec) (Output, float64, error) {
	c.trials = append(c.trials, spec.Quality)
	out, _ := c.Encode(spec)
	score, err := c.Score(out.Data)
	return out, score, err
}

// TestPaletteSearchEndsWhereThePaletteRunsOut: once two qualities make the
// same palette (libimagequant out of colours, as on a gradient), no
// quality above makes another, and the search ends, lossless, rather than
// trying the rest of the range (each trial a quantisation of the whole
// image); a palette that still grows is searched on, and one that meets the
// target on the way is kept.
func TestPaletteSearchEndsWhereThePaletteRunsOut(t *testing.T) {
	svc := newTestService(t, newMemStore(), &fakeProcessor{}, 1, 1)
	rising := func(q int) float64 { return 20 + 0.6*float64(q) } // meets 70 at q84
	for _, tc := range []struct {
		name      string
		palette   int
		maxTrials int
		wantQ     int // 0: lossless
	}{
		{"out of colours below the search's start", 40, 2, 0},
		{"out of colours on the way up", 70, 3, 0},
		{"meets the target before it runs out", 90, 4, 84},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prep := &curvePrepared{score: rising, palette: tc.palette}
			_, chosen, err := svc.search(context.Background(), prep, variant.Spec{Format: variant.FormatPNG, AutoQuality: true}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if chosen.Quality != tc.wantQ || len(prep.trials) > tc.maxTrials {
				t.Errorf("chose q%d after trials %v; want q%d in at most %d trials", chosen.Quality, prep.trials, tc.wantQ, tc.maxTrials)
			}
		})
	}
}

// TestSearchFindsTheLowestPassingQuality: on curves shaped like the
// codecs' (even slopes, steep and shallow ones, plateaus where quality
// steps share a quantiser, a dip where WebP's scores are not monotonic),
// the search returns a quality that meets the target, and either the step
// below fails or the pass is within closeEnough of the target; in a few
// trials.
func TestSearchFindsTheLowestPassingQuality(t *testing.T) {
	linear := func(at70 int, slope float64) func(int) float64 {
		return func(q int) float64 { return 70 + slope*float64(q-at70) + 0.3 }
	}
	plateaus := func(f func(int) float64) func(int) float64 {
		return func(q int) float64 { return f(q &^ 1) } // pairs of qualities score alike
	}
	tests := []struct {
		name   string
		format variant.Format
		score  func(int) float64
	}{
		{"JPEG, typical", variant.FormatJPEG, linear(74, 0.7)},
		{"JPEG, detailed", variant.FormatJPEG, linear(88, 0.6)},
		{"JPEG, smooth", variant.FormatJPEG, linear(58, 0.5)},
		{"JPEG, steep", variant.FormatJPEG, linear(70, 1.6)},
		{"AVIF, plateaus", variant.FormatAVIF, plateaus(linear(61, 0.9))},
		{"AVIF, low", variant.FormatAVIF, plateaus(linear(48, 0.8))},
		{"WebP, a dip", variant.FormatWebP, func(q int) float64 {
			s := linear(79, 0.9)(q)
			if q == 76 {
				s += 1.5 // scores above its neighbours
			}
			return s
		}},
		{"WebP, shallow", variant.FormatWebP, linear(83, 0.4)},
		// An easy graphic, or a small output: far above the target down to
		// the bottom of the range.
		{"WebP, an easy graphic", variant.FormatWebP, func(q int) float64 { return 76 + 0.15*float64(q-40) }},
		{"AVIF, an easy graphic", variant.FormatAVIF, func(q int) float64 { return 74 + 0.2*float64(q-40) }},
	}
	svc := newTestService(t, newMemStore(), &fakeProcessor{}, 1, 1)
	target := DefaultAutoQuality.Targets[variant.FormatJPEG]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prep := &curvePrepared{score: tt.score}
			_, chosen, err := svc.search(context.Background(), prep, variant.Spec{Format: tt.format, AutoQuality: true}, 0)
			if err != nil {
				t.Fatal(err)
			}
			q := chosen.Quality
			if s := tt.score(q); s < target {
				t.Fatalf("chose q%d, which scores %.2f < %v (trials %v)", q, s, target, prep.trials)
			}
			if q > DefaultAutoQuality.MinQuality && tt.score(q-1) >= target && tt.score(q)-target >= closeEnough {
				t.Errorf("chose q%d (%.2f) where q%d passes too (%.2f) (trials %v)", q, tt.score(q), q-1, tt.score(q-1), prep.trials)
			}
			if len(prep.trials) > 4 {
				t.Errorf("%d trials %v, want at most 4", len(prep.trials), prep.trials)
			}
			if strings.Contains(tt.name, "easy") && len(prep.trials) > 3 {
				t.Errorf("%d trials %v for a flat curve, want at most 3", len(prep.trials), prep.trials)
			}
		})
	}
	if math.IsNaN(target) {
		t.Fatal("no JPEG target")
	}
}

// TestSearchMeetsTheSpecsOwnTarget: a spec's TargetScore, from its preset
// or its request, replaces the configured target for its format.
func TestSearchMeetsTheSpecsOwnTarget(t *testing.T) {
	score := func(q int) float64 { return 70 + 0.7*float64(q-66) + 0.3 }
	svc := newTestService(t, newMemStore(), &fakeProcessor{}, 1, 1)
	for _, tt := range []struct {
		target int
		want   float64
	}{{0, DefaultAutoQuality.Targets[variant.FormatAVIF]}, {80, 80}, {55, 55}, {90, 90}} {
		prep := &curvePrepared{score: score}
		out, chosen, err := svc.search(context.Background(), prep, variant.Spec{Format: variant.FormatAVIF, AutoQuality: true, TargetScore: tt.target}, 0)
		if err != nil {
			t.Fatal(err)
		}
		q := chosen.Quality
		if score(q) < tt.want || score(q-1) >= tt.want && score(q)-tt.want >= closeEnough {
			t.Errorf("target %d: chose q%d (%.1f), want the lowest quality scoring %v (trials %v)", tt.target, q, score(q), tt.want, prep.trials)
		}
		if out.Score != score(q) {
			t.Errorf("target %d: the output reports a score of %.2f, q%d measured %.2f", tt.target, out.Score, q, score(q))
		}
	}
	// A target out of reach gets the top of the range, and its score.
	top := DefaultAutoQuality.MaxQuality
	out, chosen, err := svc.search(context.Background(), &curvePrepared{score: score}, variant.Spec{Format: variant.FormatAVIF, AutoQuality: true, TargetScore: 100}, 0)
	if err != nil || chosen.Quality != top || out.Score != score(top) {
		t.Errorf("target 100: q%d scoring %.2f (%v), want q%d scoring %.2f", chosen.Quality, out.Score, err, top, score(top))
	}
}

// A detailed photo scores far below the target at the first trial, where a
// straight line from it leaps past the top of the range; the search tries
// the middle of what is left rather than the range's costliest encode.
func TestSearchDoesNotLeapToTheTop(t *testing.T) {
	// Measured JPEG scores of the 24 MP sample photo at 720 px: the curve
	// steepens towards the top.
	measured := []float64{25.3, 32.5, 36.4, 40.0, 46.0, 49.5, 54.2, 59.4, 64.6, 70.6, 77.6, 86.7} // q40, 45, … 95
	score := func(q int) float64 {
		i, f := (q-40)/5, float64((q-40)%5)/5
		if i >= len(measured)-1 {
			return measured[len(measured)-1]
		}
		return measured[i] + f*(measured[i+1]-measured[i])
	}
	svc := newTestService(t, newMemStore(), &fakeProcessor{}, 1, 1)
	prep := &curvePrepared{score: score}
	_, chosen, err := svc.search(context.Background(), prep, variant.Spec{Format: variant.FormatJPEG, AutoQuality: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := score(chosen.Quality); s < 70 || score(chosen.Quality-1) >= 70 && s-70 >= closeEnough {
		t.Errorf("chose q%d (%.1f), trials %v", chosen.Quality, s, prep.trials)
	}
	for _, q := range prep.trials {
		if q == DefaultAutoQuality.MaxQuality {
			t.Errorf("tried the top of the range: trials %v", prep.trials)
		}
	}
	if len(prep.trials) > 4 {
		t.Errorf("%d trials %v, want at most 4", len(prep.trials), prep.trials)
	}
}

// TestSearchStopsWhenTheWorkIsOutOfTime: a trial runs to its end inside
// libvips, but no further trial starts once the work's clock has run out
// (a 49 MP noisy image costs tens of seconds per whole-image trial).
func TestSearchStopsWhenTheWorkIsOutOfTime(t *testing.T) {
	svc := newTestService(t, newMemStore(), &fakeProcessor{}, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	prep := &curvePrepared{score: func(q int) float64 {
		cancel() // the clock runs out during the first trial
		return float64(q) / 2
	}}
	_, _, err := svc.search(ctx, prep, variant.Spec{Format: variant.FormatWebP, AutoQuality: true}, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("search out of time: %v, want context.Canceled", err)
	}
	if len(prep.trials) != 1 {
		t.Errorf("%d trials %v, want the one under way", len(prep.trials), prep.trials)
	}
}

// TestBestStopsAFormatThatCannotWin: searching formats for "best", a
// whole-image trial that falls short of the target already as large as
// another format's result ends that format's search; the answer is the
// one a full search of every format gives.
func TestBestStopsAFormatThatCannotWin(t *testing.T) {
	// The fake's bytes grow with quality (WebP ×0.7, JPEG ×1) and its
	// score is q-20: both formats pass at q90, where WebP is smaller. The
	// test configuration negotiates WebP and JPEG.
	best := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}, Viewer: variant.ClassWebP}}
	src := make([]byte, 10000)
	svc := newTestService(t, newMemStore(), &fakeProcessor{ratio: 0.5}, 1, 1)
	want, wantSpec := searchEvery(t, svc, src, best)

	proc := &fakeProcessor{ratio: 0.5}
	svc = newTestService(t, newMemStore(), proc, 1, 1)
	out, chosen, err := svc.Transform(context.Background(), src, best)
	if err != nil {
		t.Fatal(err)
	}
	if chosen != wantSpec || len(out.Data) != len(want.Data) || chosen.Format != variant.FormatWebP {
		t.Errorf("best: %v, %d B; every format searched: %v, %d B", chosen, len(out.Data), wantSpec, len(want.Data))
	}

	webpOnly := &fakeProcessor{ratio: 0.5}
	svc = newTestService(t, newMemStore(), webpOnly, 1, 1)
	if _, _, err := svc.Transform(context.Background(), src, Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatWebP, AutoQuality: true}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := proc.runs.Load(), webpOnly.runs.Load()+1; got != want {
		t.Errorf("best made %d encodes, want %d (WebP's search, then one JPEG trial)", got, want)
	}
}

// TestBestPrefersAFormatThatMeetsTheTarget: a format that cannot reach
// the target at any quality (its scores capped below it) loses to one that
// does, though it is smaller; and when no format can, the highest score
// wins, not the smallest.
func TestBestPrefersAFormatThatMeetsTheTarget(t *testing.T) {
	best := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}, Viewer: variant.ClassWebP}}
	src := make([]byte, 10000)
	for _, tc := range []struct {
		name  string
		cap   map[variant.Format]float64
		want  variant.Format
		score float64
	}{
		// WebP's q95 (capped at 60) is smaller than JPEG's q90 (70).
		{"WebP short of the target", map[variant.Format]float64{variant.FormatWebP: 60}, variant.FormatJPEG, 70},
		{"both short, WebP closer", map[variant.Format]float64{variant.FormatWebP: 62, variant.FormatJPEG: 55}, variant.FormatWebP, 62},
		{"both short, JPEG closer", map[variant.Format]float64{variant.FormatWebP: 55, variant.FormatJPEG: 62}, variant.FormatJPEG, 62},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newTestService(t, newMemStore(), &fakeProcessor{ratio: 0.5, scoreCap: tc.cap}, 1, 1)
			out, chosen, err := svc.Transform(context.Background(), src, best)
			if err != nil {
				t.Fatal(err)
			}
			if chosen.Format != tc.want || out.Score != tc.score {
				t.Errorf("best chose %v q%d scoring %.0f (%d B), want %v scoring %.0f", chosen.Format, chosen.Quality, out.Score, len(out.Data), tc.want, tc.score)
			}
		})
	}
}

// TestBestStopsSearchingWhenTimeRunsShort: once a format has met its
// target, "best" starts another format's search only while half the
// work's time is left, so a slow search cannot fail a build that already
// has an answer; one that has met no target yet keeps searching.
func TestBestStopsSearchingWhenTimeRunsShort(t *testing.T) {
	src := make([]byte, 10000)
	best := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}, Viewer: variant.ClassWebP}}
	// The test service negotiates WebP, then JPEG. WebP meets the target
	// in 3 trials; capped below it, it makes 5, and JPEG then 3.
	for _, tc := range []struct {
		name         string
		trialDelay   time.Duration
		webpCap      float64
		want         variant.Format
		jpegSearched bool
	}{
		{"time for both", 0, 0, variant.FormatWebP, true},
		// 1.2 s of 2: JPEG's search is not started.
		{"WebP took over half the time", 400 * time.Millisecond, 0, variant.FormatWebP, false},
		// 1.1 s of 2, no answer yet: JPEG's search runs (0.66 s).
		{"WebP took over half the time and met no target", 220 * time.Millisecond, 60, variant.FormatJPEG, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ProcessTimeout = 2 * time.Second
			proc := &fakeProcessor{ratio: 0.5, trialDelay: tc.trialDelay}
			if tc.webpCap > 0 {
				proc.scoreCap = map[variant.Format]float64{variant.FormatWebP: tc.webpCap}
			}
			svc, err := New(cfg, newMemStore(), proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}
			_, chosen, err := svc.Transform(context.Background(), src, best)
			if err != nil {
				t.Fatalf("best: %v", err)
			}
			if chosen.Format != tc.want {
				t.Errorf("best chose %v, want %v", chosen.Format, tc.want)
			}
			if got := proc.trials.of(variant.FormatJPEG) > 0; got != tc.jpegSearched {
				t.Errorf("JPEG searched: %v, want %v (trials: WebP %d, JPEG %d)", got, tc.jpegSearched, proc.trials.of(variant.FormatWebP), proc.trials.of(variant.FormatJPEG))
			}
		})
	}
}

// TestBestKeepsTransparency: for a translucent image, "best" leaves JPEG
// (which flattens it onto white) out of the comparison where another
// accepted format keeps alpha, even when JPEG would have won; a viewer
// that accepts only JPEG gets PNG (TestTranslucentKeepsAlpha).
func TestBestKeepsTransparency(t *testing.T) {
	src := make([]byte, 10000)
	// Neither reaches the target; JPEG comes closer (the test service
	// negotiates WebP and JPEG).
	jpegCloser := map[variant.Format]float64{variant.FormatWebP: 55, variant.FormatJPEG: 62}
	for _, tc := range []struct {
		name        string
		viewer      variant.Class
		translucent bool
		want        variant.Format
	}{
		{"opaque", variant.ClassWebP, false, variant.FormatJPEG},
		{"translucent", variant.ClassWebP, true, variant.FormatWebP},
		{"translucent, JPEG-only viewer", variant.ClassJPEG, true, variant.FormatPNG},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := &fakeProcessor{ratio: 0.5, scoreCap: jpegCloser, translucent: tc.translucent}
			svc := newTestService(t, newMemStore(), proc, 1, 1)
			req := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}, Viewer: tc.viewer}}
			_, chosen, err := svc.Transform(context.Background(), src, req)
			if err != nil {
				t.Fatal(err)
			}
			if chosen.Format != tc.want {
				t.Errorf("best chose %v, want %v", chosen.Format, tc.want)
			}
		})
	}
}

// TestFullChromaWhereSubsamplingFallsShort: when no subsampled JPEG
// quality reaches the target, and the search lands where the encoder keeps
// full chroma by itself (here q95), a second search below that quality with
// full chroma finds a smaller answer; an image whose subsampled encodes do
// reach the target, and WebP, which has no full-chroma mode, are not
// searched twice.
func TestFullChromaWhereSubsamplingFallsShort(t *testing.T) {
	jpeg := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatJPEG, AutoQuality: true}}}
	webp := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatWebP, AutoQuality: true}}}
	src := make([]byte, 10000)
	for _, tc := range []struct {
		name       string
		req        Request
		proc       *fakeProcessor
		quality    int
		fullChroma bool
	}{
		// Subsampled scores stop at 60; full chroma scores q-20, from q95 by
		// itself: q95, then q90 with full chroma.
		{"colour detail", jpeg, &fakeProcessor{ratio: 0.5, scoreCap: map[variant.Format]float64{variant.FormatJPEG: 60}, chromaFrom: 95}, 90, true},
		{"a photo", jpeg, &fakeProcessor{ratio: 0.5, chromaFrom: 95}, 90, false},
		{"WebP short of the target", webp, &fakeProcessor{ratio: 0.5, scoreCap: map[variant.Format]float64{variant.FormatWebP: 60}}, 95, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newTestService(t, newMemStore(), tc.proc, 1, 1)
			out, chosen, err := svc.Transform(context.Background(), src, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if chosen.Quality != tc.quality || chosen.FullChroma != tc.fullChroma {
				t.Errorf("chose q%d, full chroma %v (score %.0f, %d B); want q%d, full chroma %v", chosen.Quality, chosen.FullChroma, out.Score, len(out.Data), tc.quality, tc.fullChroma)
			}
			if tc.fullChroma {
				prep, _ := tc.proc.Prepare(src, Operation{})
				top, _ := prep.Encode(variant.Spec{Format: variant.FormatJPEG, Quality: 95})
				if out.Score < 70 || len(out.Data) >= len(top.Data) {
					t.Errorf("full chroma: %d B scoring %.0f, want the target met in fewer bytes than q95's %d", len(out.Data), out.Score, len(top.Data))
				}
			}
		})
	}
}

// searchEvery is what "best" answers when every format is searched to the
// end: the smallest of each format's own search.
func searchEvery(t *testing.T, svc *Service, src []byte, req Request) (Output, variant.Spec) {
	t.Helper()
	ch, err := svc.cfg.resolve(req.Variant)
	if err != nil {
		t.Fatal(err)
	}
	specs := ch.specs
	prep, err := svc.proc.Prepare(src, Operation{Spec: specs[0]})
	if err != nil {
		t.Fatal(err)
	}
	var best Output
	var bestSpec variant.Spec
	for _, spec := range specs {
		out, chosen, err := svc.search(context.Background(), prep, spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		if best.Data == nil || len(out.Data) < len(best.Data) {
			best, bestSpec = out, chosen
		}
	}
	return best, bestSpec
}

// webpViewer is a request for s from a viewer of WebP.
func webpViewer(s variant.Spec) Request {
	return Request{Variant: variant.Request{Override: s, Viewer: variant.ClassWebP}}
}

// TestStorableFormatsAreJudgedFromTheHeader: a format that cannot store
// the output is left out before anything is decoded; when no candidate
// can, the call is refused with the size error without a decode, whether
// it searches qualities or not.
func TestStorableFormatsAreJudgedFromTheHeader(t *testing.T) {
	src := make([]byte, 10000)
	for _, tc := range []struct {
		name     string
		req      Request
		tooLarge map[variant.Format]bool
		want     variant.Format // 0: refused
	}{
		{"best, WebP cannot", webpViewer(variant.Spec{Format: variant.FormatBest}), map[variant.Format]bool{variant.FormatWebP: true}, variant.FormatJPEG},
		{"best, none can", webpViewer(variant.Spec{Format: variant.FormatBest}), map[variant.Format]bool{variant.FormatWebP: true, variant.FormatJPEG: true}, 0},
		{"auto quality", webpViewer(variant.Spec{Format: variant.FormatWebP, AutoQuality: true}), map[variant.Format]bool{variant.FormatWebP: true}, 0},
		{"fixed quality", webpViewer(variant.Spec{Format: variant.FormatWebP, Quality: 80}), map[variant.Format]bool{variant.FormatWebP: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := &fakeProcessor{ratio: 0.5, tooLargeFor: tc.tooLarge}
			svc := newTestService(t, newMemStore(), proc, 1, 1)
			wantChoice(t, svc, proc, src, tc.req, tc.want, ErrTooLargeForFormat)
		})
	}
}

// wantChoice checks that Transform of src for req chooses the format want,
// or, when want is 0, is refused with refusal before anything is decoded.
func wantChoice(t *testing.T, svc *Service, proc *fakeProcessor, src []byte, req Request, want variant.Format, refusal error) {
	t.Helper()
	_, chosen, err := svc.Transform(context.Background(), src, req)
	if want == 0 {
		if !errors.Is(err, refusal) || proc.prepares.Load() != 0 || proc.runs.Load() != 0 {
			t.Fatalf("err %v after %d prepares and %d runs; want %v before any decode", err, proc.prepares.Load(), proc.runs.Load(), refusal)
		}
		return
	}
	if err != nil || chosen.Format != want {
		t.Fatalf("chose %v, %v; want %v", chosen.Format, err, want)
	}
}

// TestBestComparesTheFormatsTheBudgetAffords: a format whose work needs
// more than the whole pixel budget is left out of "best", which serves the
// best of the others; when none fits, or the one format asked for does
// not, the call is refused as too large, before anything is decoded.
func TestBestComparesTheFormatsTheBudgetAffords(t *testing.T) {
	src := make([]byte, 10000)
	// fakeProcessor: 4000×3000; the budget holds 2 bytes a pixel, not 3.
	limits := workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000}
	for _, tc := range []struct {
		name     string
		req      Request
		perPixel map[variant.Format]int64
		want     variant.Format // 0: refused
	}{
		{"best, WebP over", webpViewer(variant.Spec{Format: variant.FormatBest}), map[variant.Format]int64{variant.FormatWebP: 3, variant.FormatJPEG: 2}, variant.FormatJPEG},
		{"best, JPEG over", webpViewer(variant.Spec{Format: variant.FormatBest}), map[variant.Format]int64{variant.FormatWebP: 2, variant.FormatJPEG: 3}, variant.FormatWebP},
		{"best, both over", webpViewer(variant.Spec{Format: variant.FormatBest}), map[variant.Format]int64{variant.FormatWebP: 3, variant.FormatJPEG: 3}, 0},
		{"auto quality, WebP over", webpViewer(variant.Spec{Format: variant.FormatWebP, AutoQuality: true}), map[variant.Format]int64{variant.FormatWebP: 3, variant.FormatJPEG: 2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := &fakeProcessor{ratio: 0.5, perPixel: tc.perPixel}
			svc := newServiceWith(t, testConfig(), newMemStore(), proc, limits)
			wantChoice(t, svc, proc, src, tc.req, tc.want, ErrTooLarge)
			for _, f := range []variant.Format{variant.FormatWebP, variant.FormatJPEG} {
				if f != tc.want && proc.trials.of(f) != 0 {
					t.Errorf("%d trials in %v, which the budget cannot afford", proc.trials.of(f), f)
				}
			}
		})
	}
}

// TestFullChromaSearchNeedsHalfTheTime: the second, full-chroma search
// starts only while half of the time the first began with is left; else the
// first search's answer (q95, full chroma by itself, not asked) is kept.
func TestFullChromaSearchNeedsHalfTheTime(t *testing.T) {
	jpeg := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatJPEG, AutoQuality: true}}}
	src := make([]byte, 10000)
	for _, tc := range []struct {
		name       string
		trialDelay time.Duration
		quality    int
		fullChroma bool // asked for by the second search
	}{
		{"time for both", 0, 90, true},
		// The first search's trials take over 1 s of the 2.
		{"the first search took over half the time", 250 * time.Millisecond, 95, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ProcessTimeout = 2 * time.Second
			proc := &fakeProcessor{ratio: 0.5, scoreCap: map[variant.Format]float64{variant.FormatJPEG: 60}, chromaFrom: 95, trialDelay: tc.trialDelay}
			svc, err := New(cfg, newMemStore(), proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}
			_, chosen, err := svc.Transform(context.Background(), src, jpeg)
			if err != nil {
				t.Fatal(err)
			}
			if chosen.Quality != tc.quality || chosen.FullChroma != tc.fullChroma {
				t.Errorf("chose q%d, full chroma asked %v; want q%d, %v (trials: %d)", chosen.Quality, chosen.FullChroma, tc.quality, tc.fullChroma, proc.trials.of(variant.FormatJPEG))
			}
		})
	}
}

// TestTargetsFallBackPerFormat: a configuration that sets some formats'
// targets keeps the default for the others (PNG's palette among them), so
// that no search runs against a target of 0, which any encode meets.
func TestTargetsFallBackPerFormat(t *testing.T) {
	cfg := testConfig()
	cfg.Auto.Targets = map[variant.Format]float64{variant.FormatJPEG: 80}
	svc, err := New(cfg, newMemStore(), &fakeProcessor{ratio: 0.5}, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[variant.Format]float64{variant.FormatJPEG: 80, variant.FormatPNG: 70, variant.FormatWebP: 70} {
		if got := svc.target(variant.Spec{Format: f, AutoQuality: true}); got != want {
			t.Errorf("%s: target %v, want %v", f, got, want)
		}
	}
}

// avifViewer asks for s as a viewer of AVIF (and WebP) does.
func avifViewer(s variant.Spec) Request {
	return Request{Variant: variant.Request{Override: s, Viewer: variant.ClassAVIF}}
}

// withAVIF is testConfig with AVIF negotiated too.
func withAVIF() Config {
	cfg := testConfig()
	cfg.Defaults.Negotiation.AVIF = true
	cfg.Defaults.Quality = map[variant.Format]int{variant.FormatJPEG: 80, variant.FormatWebP: 75, variant.FormatAVIF: 50}
	return cfg
}

// TestNegotiatedFormatFallsBack: a negotiated format the service cannot
// make (past its format's size, or its work past the whole pixel budget)
// is answered in the next format negotiation offers the viewer, before
// anything is decoded: what a viewer of that format gets (for a translucent
// image and a JPEG-only viewer, a PNG). A format asked for by name is
// refused.
func TestNegotiatedFormatFallsBack(t *testing.T) {
	src := make([]byte, 10000)
	// fakeProcessor: 4000×3000; the budget holds 2 bytes a pixel, not 3.
	limits := workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000}
	avif, webp, jpeg := variant.FormatAVIF, variant.FormatWebP, variant.FormatJPEG
	auto := variant.Spec{Width: 720, Format: variant.FormatAuto}
	for _, tc := range []struct {
		name        string
		req         Request
		perPixel    map[variant.Format]int64
		tooLarge    map[variant.Format]bool
		translucent bool
		want        variant.Format // 0: refused
		refusal     error
	}{
		{"AVIF affordable", avifViewer(auto), map[variant.Format]int64{avif: 2}, nil, false, avif, nil},
		{"AVIF over the budget: WebP", avifViewer(auto), map[variant.Format]int64{avif: 3, webp: 2, jpeg: 2}, nil, false, webp, nil},
		{"AVIF and WebP over: JPEG", avifViewer(auto), map[variant.Format]int64{avif: 3, webp: 3, jpeg: 2}, nil, false, jpeg, nil},
		{"AVIF past its size: WebP", avifViewer(auto), map[variant.Format]int64{avif: 2, webp: 2}, map[variant.Format]bool{avif: true}, false, webp, nil},
		{"auto quality, WebP viewer, WebP past its size: JPEG", webpViewer(variant.Spec{Format: variant.FormatAuto, AutoQuality: true}), map[variant.Format]int64{webp: 2, jpeg: 2}, map[variant.Format]bool{webp: true}, false, jpeg, nil},
		{"translucent: the PNG a JPEG-only viewer gets", avifViewer(auto), map[variant.Format]int64{avif: 3, webp: 3, jpeg: 2}, nil, true, variant.FormatPNG, nil},
		{"none affordable: AVIF's refusal", avifViewer(auto), map[variant.Format]int64{avif: 3, webp: 3, jpeg: 3}, nil, false, 0, ErrTooLarge},
		{"none storable: AVIF's refusal", avifViewer(auto), nil, map[variant.Format]bool{avif: true, webp: true, jpeg: true}, false, 0, ErrTooLargeForFormat},
		{"AVIF by name", avifViewer(variant.Spec{Width: 720, Format: avif}), map[variant.Format]int64{avif: 3, webp: 2, jpeg: 2}, nil, false, 0, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := &fakeProcessor{ratio: 0.5, perPixel: tc.perPixel, tooLargeFor: tc.tooLarge, translucent: tc.translucent}
			svc := newServiceWith(t, withAVIF(), newMemStore(), proc, limits)
			wantChoice(t, svc, proc, src, tc.req, tc.want, tc.refusal)
		})
	}
}
