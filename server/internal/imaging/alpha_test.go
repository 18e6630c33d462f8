package imaging

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// hiddenColourPNG is w×h: opaque light grey on the left, a band whose alpha
// falls from 255 to 0, then stripes of opaque grey and fully transparent
// pixels whose hidden colour is black. Resampling without premultiplying
// drags that black into every edge.
func hiddenColourPNG(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{200, 200, 200, 255}
			switch {
			case x >= w/2+w/8 && (x/6)%2 == 1:
				c = color.NRGBA{0, 0, 0, 0}
			case x >= w/2 && x < w/2+w/8:
				c.A = uint8(255 - 255*(x-w/2)/(w/8))
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// premultipliedHalf is the reference: a 2×2 box in premultiplied space,
// unpremultiplied, then flattened onto white.
func premultipliedHalf(src *image.NRGBA) *image.RGBA {
	b := src.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx()/2, b.Dy()/2))
	for y := range out.Bounds().Dy() {
		for x := range out.Bounds().Dx() {
			var r, g, bl, a float64
			for _, d := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
				c := src.NRGBAAt(2*x+d[0], 2*y+d[1])
				al := float64(c.A) / 255
				r += float64(c.R) * al
				g += float64(c.G) * al
				bl += float64(c.B) * al
				a += al
			}
			r, g, bl, a = r/4, g/4, bl/4, a/4
			flat := func(premul float64) uint8 { return uint8(math.Round(premul + 255*(1-a))) }
			out.SetRGBA(x, y, color.RGBA{flat(r), flat(g), flat(bl), 255})
		}
	}
	return out
}

// flattenOnWhite composites a decoded image onto white.
func flattenOnWhite(img image.Image) *image.RGBA {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA() // premultiplied, 16-bit
			flat := func(c uint32) uint8 { return uint8(math.Round((float64(c) + float64(0xffff-a)) / 257)) }
			out.SetRGBA(x, y, color.RGBA{flat(r), flat(g), flat(bl), 255})
		}
	}
	return out
}

// maxAbsDiff is the largest difference on any channel.
func maxAbsDiff(a, b image.Image) int {
	worst := 0
	for y := range a.Bounds().Dy() {
		for x := range a.Bounds().Dx() {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x, y).RGBA()
			for _, d := range []int{int(ar>>8) - int(br>>8), int(ag>>8) - int(bg>>8), int(ab>>8) - int(bb>>8)} {
				worst = max(worst, d, -d)
			}
		}
	}
	return worst
}

// TestResizeWithAlphaPremultiplies: halving an image with transparency
// matches a premultiplied reference, both as PNG (alpha kept, compared as
// seen on white) and as JPEG (flattened): no dark fringes, no hidden
// colour bleeding through.
func TestResizeWithAlphaPremultiplies(t *testing.T) {
	src := hiddenColourPNG(960, 240)
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	want := premultipliedHalf(src)
	for _, tt := range []struct {
		format  variant.Format
		meanTol float64
		maxTol  int
	}{
		{variant.FormatPNG, 1.5, 8},
		{variant.FormatJPEG, 2.5, 10},
	} {
		t.Run(tt.format.String(), func(t *testing.T) {
			_, img := run(t, buf.Bytes(), variant.Spec{Width: 480, Format: tt.format, Quality: 90})
			got := flattenOnWhite(img)
			mean, worst := testimages.MeanAbsDiff(want, got), maxAbsDiff(want, got)
			t.Logf("against the premultiplied reference: mean %.2f, max %d", mean, worst)
			if mean > tt.meanTol || worst > tt.maxTol {
				t.Errorf("mean error %.2f (tolerance %.1f), max %d (tolerance %d)", mean, tt.meanTol, worst, tt.maxTol)
			}
			// Every pixel is a blend of grey 200 and white: never darker.
			for y := range got.Bounds().Dy() {
				for x := range got.Bounds().Dx() {
					if c := got.RGBAAt(x, y); c.R < 185 {
						t.Fatalf("pixel (%d, %d) is %v: a dark fringe", x, y, c)
					}
				}
			}
		})
	}
}

// TestTranslucent: Prepare tells an image with pixels below opaque from
// one that has an alpha channel but no use for it, and from images
// without alpha.
func TestTranslucent(t *testing.T) {
	for _, tc := range []struct {
		name            string
		data            []byte
		alphaBand, want bool
	}{
		{"half transparent PNG", testimages.PNG(64, 48), true, true},
		{"alpha varying per pixel", testimages.TranslucentPNG(64, 48), true, true},
		{"RGBA PNG, all opaque", testimages.OpaqueRGBAPNG(64, 48), true, false},
		{"JPEG", testimages.JPEG(64, 48, 90), false, false},
		{"1-bit PNG", testimages.OneBitPNG(64, 48), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := proc.Probe(tc.data)
			if err != nil || info.Alpha != tc.alphaBand {
				t.Fatalf("Probe: alpha %v, %v; want alpha %v", info.Alpha, err, tc.alphaBand)
			}
			prep, err := proc.Prepare(tc.data, transform.Operation{Spec: resolved(variant.Spec{Width: 32, Format: variant.FormatWebP, AutoQuality: true}), Source: info})
			if err != nil {
				t.Fatal(err)
			}
			if got := prep.Translucent(); got != tc.want {
				t.Errorf("Translucent() = %v, want %v (header alpha %v)", got, tc.want, info.Alpha)
			}
		})
	}
}

// TestPNGPalette: a PNG with a quality is a palette (libimagequant) that
// keeps the alpha, scored as a viewer sees it, smaller as the quality
// falls; without one it is lossless, every pixel as prepared.
func TestPNGPalette(t *testing.T) {
	data := testimages.TranslucentPNG(320, 240)
	info, err := proc.Probe(data)
	if err != nil {
		t.Fatal(err)
	}
	prep, err := proc.Prepare(data, transform.Operation{Spec: resolved(variant.Spec{Format: variant.FormatPNG, AutoQuality: true}), Source: info})
	if err != nil {
		t.Fatal(err)
	}
	lossless, err := prep.Encode(variant.Spec{Format: variant.FormatPNG})
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(lossless.Data))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.(*image.NRGBA); !ok {
		t.Errorf("lossless: %T, want RGBA (*image.NRGBA)", img)
	}
	if score, err := prep.Score(lossless.Data); err != nil || score < 99.9 {
		t.Errorf("lossless scores %.2f, %v; want 100", score, err)
	}
	prevSize, prevScore := len(lossless.Data), 100.0
	for _, q := range []int{90, 60, 30} {
		out, score, err := prep.Trial(variant.Spec{Format: variant.FormatPNG, Quality: q})
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(out.Data))
		if err != nil {
			t.Fatal(err)
		}
		p, ok := img.(*image.Paletted)
		if !ok || len(p.Palette) > 256 {
			t.Fatalf("q%d: %T, want a palette of at most 256 colours", q, img)
		}
		translucent := false
		for _, c := range p.Palette {
			if _, _, _, a := c.RGBA(); a < 0xffff {
				translucent = true
			}
		}
		if !translucent {
			t.Errorf("q%d: the palette lost the alpha", q)
		}
		if len(out.Data) >= prevSize || score > prevScore {
			t.Errorf("q%d: %d B scoring %.1f; want fewer bytes than %d and at most %.1f", q, len(out.Data), score, prevSize, prevScore)
		}
		t.Logf("q%d: %d B, %.1f (lossless %d B)", q, len(out.Data), score, len(lossless.Data))
		prevSize, prevScore = len(out.Data), score
	}
}
