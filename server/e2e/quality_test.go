package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// qualityImages are the test images: generated ones and the samples the repo ships.
func qualityImages(t *testing.T) map[string][]byte {
	imgs := map[string][]byte{
		"photo.jpg":   testimages.JPEG(1200, 900, 95),
		"alpha.png":   testimages.PNG(800, 600),
		"rotated.jpg": testimages.WithOrientation(testimages.JPEG(1000, 700, 93), 6),
	}
	for _, name := range []string{"saw.jpg", "scooter.jpg"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "dev", "samples", "photos", name))
		if err != nil {
			t.Fatal(err)
		}
		imgs[name] = data
	}
	return imgs
}

func TestAutoQualityMeetsTargetAndNeverGrows(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	target := config.Default().AutoQuality.Targets
	for name, src := range qualityImages(t) {
		putVia(t, st)(name, src)
		info, err := h.proc.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []imgedgev1.Format{imgedgev1.Format_FORMAT_JPEG, imgedgev1.Format_FORMAT_WEBP, imgedgev1.Format_FORMAT_AVIF} {
			widths := []*uint32{ptr(uint32(640))}
			if f == imgedgev1.Format_FORMAT_JPEG {
				widths = append(widths, nil) // same size: the prototype's job
			}
			for _, width := range widths {
				resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Width: width, Format: f, AutoQuality: true}})
				if resp.GetOutcome() == imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER {
					if resp.GetKey() != name {
						t.Errorf("%s %v: kept original but key %q", name, f, resp.GetKey())
					}
					continue
				}
				if resp.GetSize() >= int64(len(src)) {
					t.Errorf("%s %v: variant %d bytes, original %d", name, f, resp.GetSize(), len(src))
				}
				data, _, err := st.Get(context.Background(), bucket, resp.GetKey(), 0)
				if err != nil {
					t.Fatal(err)
				}
				spec := variant.Spec{Format: variant.Format(f)}
				if width != nil {
					spec.Width = int(*width)
				}
				prep, err := h.proc.Prepare(src, transform.Operation{Spec: spec.Resolve(variant.ClassJPEG, variant.Defaults{})[0], Source: info})
				if err != nil {
					t.Fatal(err)
				}
				score, err := prep.Score(data)
				want := target[variant.Format(f).String()]
				if err != nil || (score < want && resp.GetQuality() < 95) {
					t.Errorf("%s %v w=%v: score %.4f at q%d, target %.3f (%v)", name, f, width, score, resp.GetQuality(), want, err)
				}
				if resp.GetQuality() < 40 || resp.GetQuality() > 95 {
					t.Errorf("%s %v: quality %d outside the search range", name, f, resp.GetQuality())
				}
			}
		}
	}
}

// TestLowQualityJPEGsAreRecompressedWhenItPays: a JPEG already at a low
// quality (q40 with the standard tables, as most encoders write it) still
// takes fewer bytes at the default target with the service's encoder, so
// same-size auto JPEG recompresses it; one at q20 is answered with the
// original, without a search.
func TestLowQualityJPEGsAreRecompressedWhenItPays(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	photo := testimages.DecodeFile(t, filepath.Join("..", "..", "deploy", "dev", "samples", "photos", "saw.jpg"))
	target := config.Default().AutoQuality.Targets["jpeg"]
	for _, tc := range []struct {
		quality int
		created bool
	}{{40, true}, {20, false}} {
		var src bytes.Buffer
		if err := jpeg.Encode(&src, photo, &jpeg.Options{Quality: tc.quality}); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("saw-q%d.jpg", tc.quality)
		putVia(t, st)(name, src.Bytes())
		runs := h.proc.runs.Load()
		resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_JPEG, AutoQuality: true}})
		if !tc.created {
			if resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER || h.proc.runs.Load() != runs {
				t.Errorf("q%d source: %v after %d runs, want the original without a search", tc.quality, resp.GetOutcome(), h.proc.runs.Load()-runs)
			}
			continue
		}
		if resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED || float64(resp.GetSize()) > 0.95*float64(src.Len()) {
			t.Fatalf("q%d source, %d B: %v, %d B, want a variant at least 5 %% smaller", tc.quality, src.Len(), resp.GetOutcome(), resp.GetSize())
		}
		data, _, err := st.Get(context.Background(), bucket, resp.GetKey(), 0)
		if err != nil {
			t.Fatal(err)
		}
		info, err := h.proc.Probe(src.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ref, err := h.proc.Prepare(src.Bytes(), transform.Operation{Spec: variant.Spec{Format: variant.FormatPNG}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		if score, err := ref.Score(data); err != nil || score < target {
			t.Errorf("q%d source: the variant (q%d, %d B of %d) scores %.1f against it, target %.0f (%v)", tc.quality, resp.GetQuality(), resp.GetSize(), src.Len(), score, target, err)
		}
		t.Logf("q%d source, %d B: q%d, %d B (%.1f %% fewer)", tc.quality, src.Len(), resp.GetQuality(), resp.GetSize(), 100*(1-float64(resp.GetSize())/float64(src.Len())))
	}
}

// TestBestPicksTheSmallestAcceptedFormat: "best" serves, among the
// formats the viewer accepts, the smallest auto-quality result that meets
// the target; one that falls short (WebP on colour noise, which it cannot
// keep at any quality) is served only when every format does, and then the
// highest score wins.
func TestBestPicksTheSmallestAcceptedFormat(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	target := float32(config.Default().AutoQuality.Targets["jpeg"])
	imgs := qualityImages(t)
	// Colour noise as a full-chroma JPEG (q100): WebP's plain conversion to
	// 4:2:0 (a PNG original would get sharp YUV) cannot keep it.
	noise, _ := transformCall(t, h, &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_JPEG, Quality: ptr(uint32(100))}, testimages.ColourNoisePNG(480, 360))
	imgs["colour-noise.jpg"] = noise
	type result struct {
		size  int64
		score float32
	}
	// better is the order "best" must follow.
	better := func(a, b result) bool {
		switch metA, metB := a.score >= target, b.score >= target; {
		case metA != metB:
			return metA
		case !metA && a.score != b.score:
			return a.score > b.score
		}
		return a.size < b.size
	}
	for name, src := range imgs {
		putVia(t, st)(name, src)
		results := map[imgedgev1.Format]result{}
		for _, f := range []imgedgev1.Format{imgedgev1.Format_FORMAT_JPEG, imgedgev1.Format_FORMAT_WEBP, imgedgev1.Format_FORMAT_AVIF} {
			resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(480)), Format: f, AutoQuality: true}})
			if resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER {
				results[f] = result{resp.GetSize(), resp.GetScore()}
			}
		}
		for accept, allowed := range map[string][]imgedgev1.Format{
			"image/avif,image/webp,*/*": {imgedgev1.Format_FORMAT_AVIF, imgedgev1.Format_FORMAT_WEBP, imgedgev1.Format_FORMAT_JPEG},
			"image/webp,*/*":            {imgedgev1.Format_FORMAT_WEBP, imgedgev1.Format_FORMAT_JPEG},
			"*/*":                       {imgedgev1.Format_FORMAT_JPEG},
		} {
			resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(480)), Format: imgedgev1.Format_FORMAT_BEST, Viewer: &imgedgev1.VariantSpec_Accept{Accept: accept}}})
			var want imgedgev1.Format
			for _, f := range allowed {
				if r, ok := results[f]; ok && (want == 0 || better(r, results[want])) {
					want = f
				}
			}
			if name == "alpha.png" && accept == "*/*" {
				// Translucent, and JPEG would flatten it: PNG (TestBestKeepsTransparency).
				if resp.GetFormat() != imgedgev1.Format_FORMAT_PNG {
					t.Errorf("%s, Accept %q: best gave %v, want FORMAT_PNG", name, accept, resp.GetFormat())
				}
				continue
			}
			if resp.GetFormat() != want || resp.GetSize() != results[want].size {
				t.Errorf("%s, Accept %q: best gave %v (%d B), want %v of %v", name, accept, resp.GetFormat(), resp.GetSize(), want, results)
			}
		}
		if name == "colour-noise.jpg" {
			webp, jpeg := results[imgedgev1.Format_FORMAT_WEBP], results[imgedgev1.Format_FORMAT_JPEG]
			if webp.score >= target || jpeg.score < target || webp.size >= jpeg.size {
				t.Errorf("colour noise: WebP %+v, JPEG %+v; the case wants a smaller WebP short of the target, and a JPEG that meets it", webp, jpeg)
			}
		}
	}
}

// TestBestKeepsTransparency: "best" never serves a translucent image as a
// JPEG (flattened onto white), even where the JPEG is the smallest result
// that meets the target: a viewer that accepts a format with alpha gets
// that, a viewer of JPEG alone the PNG, and so does "auto"; a JPEG asked
// for by name is still the flattened JPEG.
func TestBestKeepsTransparency(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	putVia(t, st)("logo.png", testimages.WhiteAlphaNoisePNG(300, 200))
	call := func(f imgedgev1.Format, accept string) *imgedgev1.EnsureVariantResponse {
		return ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "logo.png", Variant: &imgedgev1.VariantSpec{
			Format: f, AutoQuality: true, Viewer: &imgedgev1.VariantSpec_Accept{Accept: accept}}})
	}
	jpeg, avif := call(imgedgev1.Format_FORMAT_JPEG, "*/*"), call(imgedgev1.Format_FORMAT_AVIF, "image/avif")
	if jpeg.GetOutcome() == imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER || jpeg.GetSize() >= avif.GetSize() {
		t.Fatalf("JPEG %v (%d B), AVIF %v (%d B): the case wants a stored JPEG smaller than the AVIF", jpeg.GetOutcome(), jpeg.GetSize(), avif.GetOutcome(), avif.GetSize())
	}
	if got := call(imgedgev1.Format_FORMAT_BEST, "image/avif,image/webp,*/*"); got.GetFormat() != imgedgev1.Format_FORMAT_AVIF {
		t.Errorf("AVIF viewer: best gave %v (%d B, score %.1f), want FORMAT_AVIF", got.GetFormat(), got.GetSize(), got.GetScore())
	}
	// A JPEG-only viewer: a PNG, or the original PNG where that is smaller
	// (here, at the original's size).
	if got := call(imgedgev1.Format_FORMAT_BEST, "*/*"); got.GetKey() != "logo.png" && got.GetFormat() != imgedgev1.Format_FORMAT_PNG {
		t.Errorf("JPEG-only viewer: best served %s (%v, %v), want a PNG or the original", got.GetKey(), got.GetOutcome(), got.GetFormat())
	}
	for _, accept := range []string{"*/*", ""} {
		got := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "logo.png", Variant: &imgedgev1.VariantSpec{
			Width: ptr(uint32(150)), Format: imgedgev1.Format_FORMAT_AUTO, Viewer: &imgedgev1.VariantSpec_Accept{Accept: accept}}})
		if got.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED && got.GetOutcome() != imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED || got.GetFormat() != imgedgev1.Format_FORMAT_PNG {
			t.Fatalf("Accept %q: auto gave %v %v, want a FORMAT_PNG variant", accept, got.GetOutcome(), got.GetFormat())
		}
		data, _, err := st.Get(context.Background(), bucket, got.GetKey(), 0)
		if err != nil || got.GetContentType() != "image/png" {
			t.Fatalf("Accept %q: %s (%s): %v", accept, got.GetKey(), got.GetContentType(), err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Accept %q: %s: %v", accept, got.GetKey(), err)
		}
		if opaque(img) {
			t.Errorf("Accept %q: %s lost its transparency", accept, got.GetKey())
		}
	}
	// An alpha band with every pixel opaque (a screenshot) is the JPEG.
	putVia(t, st)("screenshot.png", testimages.OpaqueRGBAPNG(300, 200))
	got := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "screenshot.png", Variant: &imgedgev1.VariantSpec{
		Width: ptr(uint32(150)), Format: imgedgev1.Format_FORMAT_AUTO, Viewer: &imgedgev1.VariantSpec_Accept{Accept: "*/*"}}})
	if got.GetFormat() != imgedgev1.Format_FORMAT_JPEG || got.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED {
		t.Errorf("opaque RGBA, Accept */*: auto gave %v %v, want a JPEG variant", got.GetOutcome(), got.GetFormat())
	}
}

// TestTranslucentPaletteMeetsTheTarget: a translucent image for a viewer
// of JPEG alone, with auto quality, is a palette PNG where one meets the
// target (with its transparency, in a fraction of the lossless bytes),
// and lossless where none does; a PNG without auto quality stays lossless.
func TestTranslucentPaletteMeetsTheTarget(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	putVia(t, st)("logo.png", testimages.TranslucentPNG(480, 360))
	call := func(f imgedgev1.Format, target uint32) (*imgedgev1.EnsureVariantResponse, []byte) {
		t.Helper()
		v := &imgedgev1.VariantSpec{Width: ptr(uint32(320)), Format: f, Viewer: &imgedgev1.VariantSpec_Accept{Accept: "*/*"}}
		if target > 0 {
			v.TargetScore = ptr(target)
		}
		resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "logo.png", Variant: v})
		if resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED || resp.GetFormat() != imgedgev1.Format_FORMAT_PNG {
			t.Fatalf("%v at %d: %v %v, want a created PNG", f, target, resp.GetOutcome(), resp.GetFormat())
		}
		data, _, err := st.Get(context.Background(), bucket, resp.GetKey(), 0)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil || opaque(img) {
			t.Fatalf("%s: %v, or it lost its transparency", resp.GetKey(), err)
		}
		return resp, data
	}
	const indexed, rgba = 3, 6 // IHDR colour types
	lossless, data := call(imgedgev1.Format_FORMAT_PNG, 0)
	if lossless.GetQuality() != 0 || data[25] != rgba {
		t.Fatalf("an explicit PNG: quality %d, colour type %d; want lossless RGBA", lossless.GetQuality(), data[25])
	}
	palette, data := call(imgedgev1.Format_FORMAT_BEST, 0)
	target := float32(config.Default().AutoQuality.Targets["png"])
	if data[25] != indexed || palette.GetQuality() == 0 || palette.GetScore() < target || palette.GetSize()*3 > lossless.GetSize() || !strings.Contains(palette.GetKey(), "_qauto/") {
		t.Errorf("best: %s, colour type %d, q%d scoring %.1f, %d B; want a palette meeting %.0f in under a third of the lossless %d B",
			palette.GetKey(), data[25], palette.GetQuality(), palette.GetScore(), palette.GetSize(), target, lossless.GetSize())
	}
	t.Logf("lossless %d B; palette q%d, %d B, scoring %.1f", lossless.GetSize(), palette.GetQuality(), palette.GetSize(), palette.GetScore())
	// No palette of this gradient reaches 95: lossless, under its own key.
	high, data := call(imgedgev1.Format_FORMAT_AUTO, 95)
	if data[25] != rgba || high.GetQuality() != 0 || high.GetSize() != lossless.GetSize() || high.GetKey() == lossless.GetKey() {
		t.Errorf("auto at 95: %s, colour type %d, q%d, %d B; want the lossless %d B under a key of its own", high.GetKey(), data[25], high.GetQuality(), high.GetSize(), lossless.GetSize())
	}
}

// TestAutoKeepsFullChromaWhereSubsamplingFallsShort: on fine colour
// detail no subsampled quality reaches the target, and the first search
// lands where the encoder keeps full chroma by itself (JPEG's q95, AVIF's
// q90); the answer is a full-chroma encode at a lower quality that meets
// the target in fewer bytes, stored as 4:4:4, and a later lookup reports
// the same.
func TestAutoKeepsFullChromaWhereSubsamplingFallsShort(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, func(c *config.Config) { c.KnownVariantTTL = 0 })
	putVia(t, st)("colour-noise.png", testimages.ColourNoisePNG(480, 360))
	for _, tc := range []struct {
		name       string
		format     imgedgev1.Format
		top        uint32 // the quality from which the encoder keeps full chroma
		fullChroma func(data []byte) (bool, error)
	}{
		{"colour-noise.png", imgedgev1.Format_FORMAT_JPEG, 95, jpegIs444},
		{"colour-noise.png", imgedgev1.Format_FORMAT_AVIF, 90, avifIs444},
	} {
		name := tc.name
		t.Run(name+" "+tc.format.String(), func(t *testing.T) {
			auto := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Format: tc.format, AutoQuality: true}}
			resp := ensure(t, h, auto)
			top := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Format: tc.format, Quality: ptr(tc.top)}})
			target := float32(config.Default().AutoQuality.Targets["jpeg"])
			if resp.GetQuality() >= tc.top || resp.GetScore() < target || resp.GetSize() >= top.GetSize() {
				t.Fatalf("auto: q%d scoring %.1f, %d B; want below q%d, at least %.0f, and smaller than q%d's %d B", resp.GetQuality(), resp.GetScore(), resp.GetSize(), tc.top, target, tc.top, top.GetSize())
			}
			data, _, err := st.Get(context.Background(), bucket, resp.GetKey(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if full, err := tc.fullChroma(data); err != nil || !full {
				t.Errorf("the variant's chroma is subsampled (%v), want 4:4:4", err)
			}
			// The check tells a subsampled encode of the same format apart.
			low := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Format: tc.format, Quality: ptr(uint32(60))}})
			lowData, _, err := st.Get(context.Background(), bucket, low.GetKey(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if full, err := tc.fullChroma(lowData); err != nil || full {
				t.Errorf("q60 reads as full chroma %v (%v), want subsampled", full, err)
			}
			again := ensure(t, h, auto)
			if again.GetOutcome() != imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED || again.GetQuality() != resp.GetQuality() || again.GetSize() != resp.GetSize() {
				t.Errorf("lookup: %v q%d %d B, want the variant made, q%d %d B", again.GetOutcome(), again.GetQuality(), again.GetSize(), resp.GetQuality(), resp.GetSize())
			}
			t.Logf("q%d: %d B, %.1f; auto: q%d with full chroma, %d B, %.1f", tc.top, top.GetSize(), top.GetScore(), resp.GetQuality(), resp.GetSize(), resp.GetScore())
		})
	}
}

// jpegIs444 says whether a JPEG keeps its chroma at full resolution.
func jpegIs444(data []byte) (bool, error) {
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return false, err
	}
	ycc, ok := img.(*image.YCbCr)
	return ok && ycc.SubsampleRatio == image.YCbCrSubsampleRatio444, nil
}

// avifIs444 says whether an AVIF keeps its chroma at full resolution: its
// av1C box's chroma_subsampling_x and _y bits (AV1 codec configuration,
// third byte, bits 3 and 2) are both 0.
func avifIs444(data []byte) (bool, error) {
	i := bytes.Index(data, []byte("av1C"))
	if i < 0 || i+7 > len(data) {
		return false, errors.New("no av1C box")
	}
	return data[i+6]&0b1100 == 0, nil
}

// TestBestLeavesOutFormatsThatCannotHoldTheImage: a page-long image,
// 17,000 pixels tall (past WebP's 16,383 and AVIF's 16,384), asked for as
// "best" by a viewer that accepts AVIF and WebP gets a JPEG, stored and
// found again, rather than an error (the page is translucent: JPEG,
// flattened, is served because no format that keeps alpha can store it);
// asked for in WebP alone, it is refused with InvalidArgument naming the
// limit.
func TestBestLeavesOutFormatsThatCannotHoldTheImage(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	const name = "long-page.png"
	putVia(t, st)(name, testimages.PNG(48, 17000))
	best := &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_BEST, Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/avif,image/webp,*/*"}}
	for _, want := range []imgedgev1.Outcome{imgedgev1.Outcome_OUTCOME_CREATED, imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED} {
		resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: best})
		if resp.GetOutcome() != want || resp.GetFormat() != imgedgev1.Format_FORMAT_JPEG || resp.GetWidth() != 48 || resp.GetHeight() != 17000 {
			t.Errorf("best: %v, %v %d×%d; want %v, a 48×17000 JPEG", resp.GetOutcome(), resp.GetFormat(), resp.GetWidth(), resp.GetHeight(), want)
		}
	}
	_, err := h.client.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_WEBP}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "webp stores at most 16383 on a side") {
		t.Errorf("WebP alone: %v, want InvalidArgument naming WebP's limit", err)
	}
}

// TestTargetScoreSetsTheBar: a request's target_score, or a preset's, is
// the score the search meets, on real encoders: 80 takes a higher quality
// and more bytes than the server's 70, 55 fewer, and each is keyed apart.
func TestTargetScoreSetsTheBar(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, func(c *config.Config) {
		c.Presets["preview"] = variant.Spec{Width: 640, Format: variant.FormatJPEG, TargetScore: 55}
		c.KnownVariantTTL = 0 // a second call reads the variant's metadata
	})
	const name = "scooter.jpg"
	src := qualityImages(t)[name]
	putVia(t, st)(name, src)
	info, err := h.proc.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []imgedgev1.Format{imgedgev1.Format_FORMAT_JPEG, imgedgev1.Format_FORMAT_AVIF} {
		prep, err := h.proc.Prepare(src, transform.Operation{Spec: variant.Spec{Width: 640, Format: variant.Format(f)}.Resolve(variant.ClassJPEG, variant.Defaults{})[0], Source: info})
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			quality uint32
			size    int64
		}
		got := map[int]result{}
		for _, tc := range []struct {
			target int
			spec   *imgedgev1.VariantSpec
			token  string
		}{
			{70, &imgedgev1.VariantSpec{Width: ptr(uint32(640)), Format: f, AutoQuality: true}, "w640_qauto/"},
			{80, &imgedgev1.VariantSpec{Width: ptr(uint32(640)), Format: f, TargetScore: ptr(uint32(80))}, "w640_qauto80/"},
			{55, &imgedgev1.VariantSpec{Preset: "preview", Format: f}, "w640_qauto55/"},
		} {
			resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: tc.spec})
			if resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED || !strings.Contains(resp.GetKey(), tc.token) {
				t.Fatalf("%v target %d: %v %q, want a new variant keyed %q", f, tc.target, resp.GetOutcome(), resp.GetKey(), tc.token)
			}
			data, _, err := st.Get(context.Background(), bucket, resp.GetKey(), 0)
			if err != nil {
				t.Fatal(err)
			}
			score, err := prep.Score(data)
			if err != nil || score < float64(tc.target) {
				t.Errorf("%v target %d: scores %.1f at q%d (%v)", f, tc.target, score, resp.GetQuality(), err)
			}
			// The response reports the score the search measured, on
			// creation and on every later lookup (from the variant's
			// metadata, to a tenth).
			again := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: tc.spec})
			for _, r := range []*imgedgev1.EnsureVariantResponse{resp, again} {
				if math.Abs(float64(r.GetScore())-score) > 0.06 {
					t.Errorf("%v target %d: %v reports a score of %.2f, the variant scores %.2f", f, tc.target, r.GetOutcome(), r.GetScore(), score)
				}
			}
			got[tc.target] = result{resp.GetQuality(), resp.GetSize()}
		}
		rising := got[55].quality < got[70].quality && got[70].quality < got[80].quality && got[55].size < got[70].size && got[70].size < got[80].size
		if !rising {
			t.Errorf("%v: quality and bytes by target %v, want both rising with the target", f, got)
		}
	}
	if _, res := transformCall(t, h, &imgedgev1.VariantSpec{Width: ptr(uint32(640)), Format: imgedgev1.Format_FORMAT_WEBP, TargetScore: ptr(uint32(75))}, src); res.GetScore() < 75 || res.GetQuality() == 0 {
		t.Errorf("Transform at target 75: %v", res)
	}
	// No lossy encode scores 100: the top of the range, and how close it came.
	if _, res := transformCall(t, h, &imgedgev1.VariantSpec{Width: ptr(uint32(640)), Format: imgedgev1.Format_FORMAT_JPEG, TargetScore: ptr(uint32(100))}, src); res.GetQuality() != 95 || res.GetScore() < 80 || res.GetScore() >= 100 {
		t.Errorf("Transform at target 100: %v, want q95 and its score", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = h.client.EnsureVariant(ctx, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: name, Variant: &imgedgev1.VariantSpec{TargetScore: ptr(uint32(0))}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "target_score 0") {
		t.Errorf("target_score 0: %v, want InvalidArgument naming it", err)
	}
}

// TestSearchedScoreSurvivesTheStore: the quality and score a search chose
// come back from the variant's metadata on S3 as on the local store.
func TestSearchedScoreSurvivesTheStore(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), _ func(string) []byte) {
		h := startServer(t, st, func(c *config.Config) { c.KnownVariantTTL = 0 })
		put("photo.jpg", testimages.JPEG(800, 600, 95))
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg", Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(400)), Format: imgedgev1.Format_FORMAT_WEBP, TargetScore: ptr(uint32(75))}}
		first, again := ensure(t, h, req), ensure(t, h, req)
		if first.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED || again.GetOutcome() != imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED {
			t.Fatalf("outcomes %v, %v", first.GetOutcome(), again.GetOutcome())
		}
		if first.GetScore() < 75 || again.GetScore() != first.GetScore() || again.GetQuality() != first.GetQuality() {
			t.Errorf("created: q%d scoring %.1f; looked up: q%d scoring %.1f", first.GetQuality(), first.GetScore(), again.GetQuality(), again.GetScore())
		}
	})
}

// opaque says whether every pixel of img is opaque.
func opaque(img image.Image) bool {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if _, _, _, a := img.At(x, y).RGBA(); a < 0xffff {
				return false
			}
		}
	}
	return true
}
