package imaging

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// colouredLines is a graphic of saturated lines, one and two pixels wide
// and at odd and even offsets, over white and over each other: the
// coloured edges 4:2:0 chroma darkens.
func colouredLines(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	inks := []color.NRGBA{{220, 0, 0, 255}, {0, 170, 0, 255}, {0, 0, 230, 255}, {200, 0, 200, 255}, {0, 160, 200, 255}}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{255, 255, 255, 255}
			if x%7 < 1+x/7%2 {
				c = inks[x/7%len(inks)]
			}
			if y%9 < 1+y/9%2 && x > w/3 {
				c = inks[(y/9+2)%len(inks)]
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func encoded(t *testing.T, img image.Image, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	case "jpeg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// greys is an image of grey levels, r = g = b: no chroma, nothing to fit.
func greys(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8((x*7 + y*3) % 256)
			img.SetNRGBA(x, y, color.NRGBA{v, v, v, 255})
		}
	}
	return img
}

// TestFittedLuma: 4:2:0 JPEGs of PNG and GIF sources get fitted luma,
// which keeps coloured lines' luminance (a higher SSIMULACRA2 at the same
// quality, for no more bytes), and does no harm where the lines are finer
// than chroma's blocks; every other encode is byte for byte what it was.
func TestFittedLuma(t *testing.T) {
	lines := colouredLines(320, 240)
	with, without := MozJPEG, MozJPEG
	without.FitLuma = false
	fitted, plain := New(Config{AVIFSpeed: 8, JPEG: with}), New(Config{AVIFSpeed: 8, JPEG: without})
	jpegAt := func(q, w int) variant.Spec { return variant.Spec{Format: variant.FormatJPEG, Quality: q, Width: w} }
	const unchanged, gains, harmless = 0, 1, 2
	for _, c := range []struct {
		name   string
		img    image.Image
		source string
		spec   variant.Spec
		want   int
	}{
		{"a PNG's 4:2:0 JPEG", lines, "png", jpegAt(70, 0), gains},
		{"a PNG's 4:2:0 JPEG, resized", lines, "png", jpegAt(80, 200), gains},
		{"a GIF's 4:2:0 JPEG", lines, "gif", jpegAt(80, 0), gains},
		// At half size, lines a pixel wide alternate within chroma's blocks.
		{"a PNG's 4:2:0 JPEG at half size", lines, "png", jpegAt(80, 160), harmless},
		{"a grey PNG's JPEG", greys(320, 240), "png", jpegAt(70, 0), unchanged},
		{"a JPEG's JPEG", lines, "jpeg", jpegAt(70, 0), unchanged},
		{"a PNG's JPEG with full chroma by quality", lines, "png", jpegAt(95, 0), unchanged},
		{"a PNG's JPEG with full chroma asked for", lines, "png", variant.Spec{Format: variant.FormatJPEG, Quality: 70, FullChroma: true}, unchanged},
		{"a PNG's WebP", lines, "png", variant.Spec{Format: variant.FormatWebP, Quality: 70}, unchanged},
		{"a PNG's AVIF", lines, "png", variant.Spec{Format: variant.FormatAVIF, Quality: 50}, unchanged},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := encoded(t, c.img, c.source)
			info, err := fitted.Probe(src)
			if err != nil {
				t.Fatal(err)
			}
			op := transform.Operation{Spec: c.spec, Source: info}
			a, err := fitted.Process(src, op)
			if err != nil {
				t.Fatal(err)
			}
			b, err := plain.Process(src, op)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == unchanged {
				if !bytes.Equal(a.Data, b.Data) {
					t.Fatalf("the encode changed (%d B, %d B without fitted luma)", len(a.Data), len(b.Data))
				}
				return
			}
			pr, scoreA, scoreB := scoredPair(t, fitted, src, op, a.Data, b.Data)
			t.Logf("fitted luma %d B scoring %.1f; plain %d B scoring %.1f", len(a.Data), scoreA, len(b.Data), scoreB)
			switch {
			case c.want == gains && (scoreA < scoreB+5 || len(a.Data) > len(b.Data)):
				t.Errorf("want 5 points more for no more bytes")
			case c.want == harmless && (scoreA < scoreB-1.5 || len(a.Data) > len(b.Data)*103/100):
				t.Errorf("want at most 1.5 points less for at most 3 %% more bytes")
			}
			// The auto-quality search's encodes fit the luma too.
			if c.spec.Width == 0 {
				enc, err := pr.Encode(c.spec)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc.Data, a.Data) {
					t.Errorf("a prepared encode (%d B) differs from Process's (%d B)", len(enc.Data), len(a.Data))
				}
			}
		})
	}
}

// scoredPair prepares src for op on p and scores two encodes of it.
func scoredPair(t *testing.T, p *Processor, src []byte, op transform.Operation, a, b []byte) (pr transform.Prepared, scoreA, scoreB float64) {
	t.Helper()
	pr, err := p.Prepare(src, op)
	if err != nil {
		t.Fatal(err)
	}
	if scoreA, err = pr.Score(a); err != nil {
		t.Fatal(err)
	}
	if scoreB, err = pr.Score(b); err != nil {
		t.Fatal(err)
	}
	return pr, scoreA, scoreB
}

// TestFittedLumaKeepsFlatColours: on flat colour, where no block mixes
// colours, fitting the luma changes nothing a viewer could see, whatever
// the image's parity (an encoder repeats an odd last row and column).
func TestFittedLumaKeepsFlatColours(t *testing.T) {
	p := New(Config{JPEG: MozJPEG})
	for _, size := range [][2]int{{1, 1}, {1, 6}, {7, 1}, {5, 3}, {64, 48}, {65, 49}} {
		for _, ink := range []color.NRGBA{{230, 20, 20, 255}, {10, 200, 40, 255}, {128, 128, 128, 255}, {250, 240, 10, 255}} {
			img := image.NewNRGBA(image.Rect(0, 0, size[0], size[1]))
			for i := 0; i < len(img.Pix); i += 4 {
				copy(img.Pix[i:], []byte{ink.R, ink.G, ink.B, ink.A})
			}
			src := encoded(t, img, "png")
			info, err := p.Probe(src)
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Process(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatJPEG, Quality: 90}, Source: info})
			if err != nil {
				t.Fatal(err)
			}
			got, err := jpeg.Decode(bytes.NewReader(out.Data))
			if err != nil {
				t.Fatal(err)
			}
			for y := 0; y < size[1]; y++ {
				for x := 0; x < size[0]; x++ {
					r, g, b, _ := got.At(x, y).RGBA()
					if d := max(absDiff(r>>8, ink.R), absDiff(g>>8, ink.G), absDiff(b>>8, ink.B)); d > 4 {
						t.Fatalf("%d×%d of %v: pixel (%d, %d) decodes as (%d, %d, %d)", size[0], size[1], ink, x, y, r>>8, g>>8, b>>8)
					}
				}
			}
		}
	}
}

func absDiff(a uint32, b uint8) uint32 {
	if a > uint32(b) {
		return a - uint32(b)
	}
	return uint32(b) - a
}

// TestWebPSharpYUV: still WebPs of PNG and GIF sources, up to
// webpSharpYUVPixels, get libwebp's sharp YUV, which keeps coloured lines
// (many points more SSIMULACRA2); other WebPs are what they were.
func TestWebPSharpYUV(t *testing.T) {
	sharp, plain := New(Config{WebPSharpYUV: true}), New(Config{})
	lines := colouredLines(320, 240)
	webpAt := func(q int) variant.Spec { return variant.Spec{Format: variant.FormatWebP, Quality: q} }
	for _, c := range []struct {
		name  string
		src   []byte
		spec  variant.Spec
		gains bool
	}{
		{"a PNG's WebP", encoded(t, lines, "png"), webpAt(70), true},
		{"a GIF's WebP", encoded(t, lines, "gif"), webpAt(80), true},
		{"a JPEG's WebP", encoded(t, lines, "jpeg"), webpAt(70), false},
		{"an animated GIF's WebP", testimages.AnimatedGIF(64, 48, 3), webpAt(70), false},
		{"a PNG's JPEG", encoded(t, lines, "png"), variant.Spec{Format: variant.FormatJPEG, Quality: 70}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, err := sharp.Probe(c.src)
			if err != nil {
				t.Fatal(err)
			}
			op := transform.Operation{Spec: c.spec, Source: info}
			a, err := sharp.Process(c.src, op)
			if err != nil {
				t.Fatal(err)
			}
			b, err := plain.Process(c.src, op)
			if err != nil {
				t.Fatal(err)
			}
			if !c.gains {
				if !bytes.Equal(a.Data, b.Data) {
					t.Fatalf("the encode changed (%d B, %d B without sharp YUV)", len(a.Data), len(b.Data))
				}
				return
			}
			pr, scoreA, scoreB := scoredPair(t, sharp, c.src, op, a.Data, b.Data)
			t.Logf("sharp YUV %d B scoring %.1f; plain %d B scoring %.1f", len(a.Data), scoreA, len(b.Data), scoreB)
			if scoreA < scoreB+20 || len(a.Data) > len(b.Data)*12/10 {
				t.Errorf("want 20 points more for at most 20 %% more bytes")
			}
			if enc, err := pr.Encode(c.spec); err != nil || !bytes.Equal(enc.Data, a.Data) {
				t.Errorf("a prepared encode differs from Process's (%v)", err)
			}
		})
	}
	if sharp.webpSharpYUV("png", webpSharpYUVPixels+1, false) || !sharp.webpSharpYUV("gif", webpSharpYUVPixels, false) {
		t.Errorf("sharp YUV is bounded at %d pixels", webpSharpYUVPixels)
	}
}
