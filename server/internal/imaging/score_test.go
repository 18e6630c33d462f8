package imaging

import (
	"errors"
	"image"
	"math"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

func TestScoreTilesCoverTheImage(t *testing.T) {
	tests := []struct {
		w, h, tiles int
	}{
		{640, 480, 1},     // small: the whole image
		{300, 20000, 8},   // thin: a column of tiles
		{200, 20000, 1},   // thinner than a tile: the whole image
		{1920, 1080, 8},   // a grid of tiles
		{4032, 3024, 8},   //
		{20000, 200, 1},   // too thin for a tile's height
		{8000, 300, 8},    // one row of tiles
		{256 * 3, 256, 1}, // under the tiled area
	}
	for _, tt := range tests {
		rects := scoreTilesOf(tt.w, tt.h)
		if len(rects) > scoreTiles || (tt.tiles == 1) != (len(rects) == 1) {
			t.Errorf("%d×%d: %d tiles, want %d", tt.w, tt.h, len(rects), tt.tiles)
		}
		bounds := image.Rect(0, 0, tt.w, tt.h)
		for _, r := range rects {
			if !r.In(bounds) || r.Empty() {
				t.Errorf("%d×%d: tile %v outside the image", tt.w, tt.h, r)
			}
		}
	}
}

// TestScoreTracksQuality: a higher quality scores higher, and a
// transparent PNG is scored as a viewer sees it (flattened onto white), so
// a good encode reaches the default target instead of never getting there.
func TestScoreTracksQuality(t *testing.T) {
	for name, src := range map[string][]byte{
		"photo": testimages.JPEG(1600, 1200, 95),
		"alpha": testimages.PNG(800, 600),
	} {
		info, err := proc.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		prep, err := proc.Prepare(src, transform.Operation{Spec: variant.Spec{Width: 800}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		var scores []float64
		for _, q := range []int{20, 60, 95} {
			out, err := prep.Encode(variant.Spec{Width: 800, Format: variant.FormatJPEG, Quality: q})
			if err != nil {
				t.Fatal(err)
			}
			s, err := prep.Score(out.Data)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, s)
		}
		if !(scores[0] < scores[1] && scores[1] < scores[2]) || scores[2] < 70 {
			t.Errorf("%s: scores at q20, q60, q95: %.1f; want rising, q95 over 70", name, scores)
		}
	}
	// Under 113 px on a side SSIMULACRA2 has fewer than six scales and its
	// scores stop tracking quality: too small to score.
	for _, size := range []struct{ w, h int }{{6, 4}, {112, 600}, {600, 112}, {113, 113}} {
		src := testimages.JPEG(size.w, size.h, 90)
		info, _ := proc.Probe(src)
		prep, err := proc.Prepare(src, transform.Operation{Spec: variant.Spec{}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := prep.Encode(variant.Spec{Format: variant.FormatJPEG, Quality: 80})
		_, err = prep.Score(out.Data)
		if small := size.w < 113 || size.h < 113; small != errors.Is(err, transform.ErrCannotScore) {
			t.Errorf("a %d×%d image: %v; want ErrCannotScore: %v", size.w, size.h, err, small)
		}
	}
}

// TestMosaicTrialTracksTheWholeImage: for an image larger than the scored
// tiles, the search judges a mosaic of the tiles encoded alone; its scores
// must be those of the same tiles in the whole image's encode, closely, and
// never kinder by more than half a point (the search would then accept a
// quality whose whole image falls short). AVIF at 10 bits (by size up to
// 2 MP) scored its mosaic up to 1.1 lower at q40 here, 0.05 at q60–80.
func TestMosaicTrialTracksTheWholeImage(t *testing.T) {
	var worst float64
	for _, tc := range []struct {
		name    string
		p       *Processor
		w, h    int
		formats []variant.Format
		harsher float64 // how much lower the mosaic may score
	}{
		{"speed 8", proc, 2000, 1500, []variant.Format{variant.FormatJPEG, variant.FormatAVIF}, 0.5},
		{"by size: speed 6, 10 bits", New(Config{AVIFSpeed: AVIFSpeedBySize}), 1600, 1200, []variant.Format{variant.FormatAVIF}, 1.5},
	} {
		prep := prepareSameSizeWith(t, tc.p, testimages.JPEG(tc.w, tc.h, 95))
		if pr := prep.(*prepared); pr.mosaic == nil || len(pr.tiles) < 2 {
			t.Fatalf("%s: %d×%d: %d tiles, mosaic %v; want tiles in a mosaic", tc.name, tc.w, tc.h, len(pr.tiles), pr.mosaic != nil)
		}
		for _, f := range tc.formats {
			for _, q := range []int{40, 60, 80} {
				spec := variant.Spec{Format: f, Quality: q}
				trial, mosaicScore, err := prep.Trial(spec)
				if err != nil || trial.Data != nil {
					t.Fatalf("%s: %v q%d: trial %d bytes, %v; want a score and no output", tc.name, f, q, len(trial.Data), err)
				}
				whole, err := prep.Encode(spec)
				if err != nil {
					t.Fatal(err)
				}
				wholeScore, err := prep.Score(whole.Data)
				if err != nil {
					t.Fatal(err)
				}
				d := mosaicScore - wholeScore
				worst = max(worst, math.Abs(d))
				if d > 0.5 || d < -tc.harsher {
					t.Errorf("%s: %v q%d: the mosaic scores %.2f, the whole image %.2f", tc.name, f, q, mosaicScore, wholeScore)
				}
			}
		}
		// WebP quantises by whole-picture statistics: it is tried whole.
		if out, _, err := prep.Trial(variant.Spec{Format: variant.FormatWebP, Quality: 75}); err != nil || out.Width != tc.w || out.Data == nil {
			t.Errorf("%s: a WebP trial: %d×%d, %d bytes, %v; want the whole image", tc.name, out.Width, out.Height, len(out.Data), err)
		}
	}
	t.Logf("mosaic and whole-image scores differ by at most %.2f", worst)
}

// TestMidSizeImagesAreTriedWhole: an image a little over the tiles' area
// has several tiles, but their mosaic (with context) would be larger than
// the image itself, so trials encode the whole image.
func TestMidSizeImagesAreTriedWhole(t *testing.T) {
	prep := prepareSameSize(t, testimages.JPEG(900, 700, 90))
	if pr := prep.(*prepared); len(pr.tiles) < 2 || pr.mosaic != nil {
		t.Fatalf("900×700: %d tiles, mosaic %v; want several tiles and no mosaic", len(pr.tiles), pr.mosaic != nil)
	}
	out, score, err := prep.Trial(variant.Spec{Format: variant.FormatJPEG, Quality: 80})
	if err != nil || out.Width != 900 || len(out.Data) == 0 || score <= 0 {
		t.Errorf("trial: %d×%d, %d bytes, score %.1f, %v; want the whole image", out.Width, out.Height, len(out.Data), score, err)
	}
}

// prepareSameSize prepares src for an auto-quality search at its own size.
func prepareSameSize(t *testing.T, src []byte) transform.Prepared {
	t.Helper()
	return prepareSameSizeWith(t, proc, src)
}

func prepareSameSizeWith(t *testing.T, p *Processor, src []byte) transform.Prepared {
	t.Helper()
	info, err := p.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := p.Prepare(src, transform.Operation{Spec: variant.Spec{}, Source: info})
	if err != nil {
		t.Fatal(err)
	}
	return prep
}
