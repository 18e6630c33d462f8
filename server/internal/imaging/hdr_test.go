package imaging

import (
	"image"
	"math"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// TestCodedColourBecomesSRGB: AVIFs coded for HDR (PQ, HLG; BT.2020) or a
// wide gamut (Display P3), and a PQ PNG (cICP), come out as the SDR photo
// they were coded from (testimages.HDRImage; testdata/make_hdr.go), in
// every output format and through the auto-quality search, where libvips
// alone passed the coded values on as sRGB: grey and washed out, or dull.
// HDR highlights (1000 cd/m² at the centre) roll off to white; alpha stays.
func TestCodedColourBecomesSRGB(t *testing.T) {
	photo := testimages.PhotoImage(256, 192)
	centre := testimages.HDRPatch(256, 192)
	pqPNG := testimages.HDRPNG(256, 192) // 16 bits, cICP
	for _, c := range []struct {
		name      string
		src       []byte
		highlight bool
		alpha     bool
	}{
		{"pq.avif", fixture(t, "pq.avif"), true, false},
		{"hlg.avif", fixture(t, "hlg.avif"), true, false},
		{"pq-alpha.avif", fixture(t, "pq-alpha.avif"), true, true},
		{"p3.avif", fixture(t, "p3.avif"), false, false},
		{"pq.png", pqPNG, true, false},
		// PNG's third edition: cICP wins over iCCP (an AVIF's ICC profile
		// wins over its nclx box, as AVIF says).
		{"pq.png beside an iCCP", testimages.WithICCP(pqPNG, testimages.DescribedProfile("sRGB")), true, false},
	} {
		src := c.src
		info, err := proc.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range []variant.Spec{
			{Format: variant.FormatPNG},
			{Format: variant.FormatJPEG, Quality: 95},
			{Format: variant.FormatWebP, Quality: 95},
			{Format: variant.FormatAVIF, Quality: 90},
		} {
			t.Run(c.name+" to "+spec.Format.String(), func(t *testing.T) {
				out, err := proc.Process(src, transform.Operation{Spec: spec, Source: info})
				if err != nil {
					t.Fatal(err)
				}
				got := viewedAs(t, out.Data)
				var sum, n float64
				for y := 0; y < 192; y++ {
					for x := 0; x < 256; x++ {
						if image.Pt(x, y).In(centre) {
							continue
						}
						w := photo.RGBAAt(x, y)
						g := got.NRGBAAt(x, y)
						a := 1.0
						if c.alpha { // the ramp, flattened onto white
							a = float64(x) / 255
						}
						for _, d := range [][2]uint8{{g.R, w.R}, {g.G, w.G}, {g.B, w.B}} {
							sum += math.Abs(float64(d[0]) - (a*float64(d[1]) + (1-a)*255))
						}
						n += 3
					}
				}
				if mean := sum / n; mean > 5 {
					t.Errorf("the pixels differ from the SDR photo by %.1f levels on average", mean)
				}
				if c.highlight {
					h := got.NRGBAAt(128, 96)
					if h.R < 245 || h.G < 245 || h.B < 245 {
						t.Errorf("the 1000 cd/m² highlight is %v, not white", h)
					}
				}
			})
		}
		if c.alpha {
			out, err := proc.Process(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatPNG}, Source: info})
			if err != nil {
				t.Fatal(err)
			}
			img, _, err := testimages.Decode(out.Data)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, a := img.At(0, 0).RGBA(); a>>8 > 2 {
				t.Errorf("alpha at the transparent edge is %d", a>>8)
			}
			if _, _, _, a := img.At(255, 0).RGBA(); a>>8 < 253 {
				t.Errorf("alpha at the opaque edge is %d", a>>8)
			}
		}
		// The auto-quality search starts from the same pixels.
		pr, err := proc.Prepare(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatJPEG, AutoQuality: true}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := pr.Encode(variant.Spec{Format: variant.FormatJPEG, Quality: 95})
		if err != nil {
			t.Fatal(err)
		}
		if got := viewedAs(t, enc.Data); testimages.MeanAbsDiff(got.SubImage(image.Rect(0, 0, 256, 64)), photo.SubImage(image.Rect(0, 0, 256, 64))) > 5 && !c.alpha {
			t.Errorf("%s: the auto-quality search's pixels are not the SDR photo's", c.name)
		}
	}
}

// viewedAs decodes a 256×192 output as a viewer sees it (alpha on white).
func viewedAs(t *testing.T, data []byte) *image.NRGBA {
	t.Helper()
	whole := image.Rect(0, 0, 256, 192)
	tiles, err := (&prepared{}).viewed(data, whole.Dx(), whole.Dy(), 0, []image.Rectangle{whole})
	if err != nil {
		t.Fatal(err)
	}
	return tiles[0]
}
