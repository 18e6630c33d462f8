package imaging

import (
	"testing"

	"github.com/imgedge/imgedge/client/variant"
)

// FuzzProcessShapes runs small generated images of random shapes, in every
// input format, through the real pipeline with a random spec: the answer is
// a variant of the planned size or a clear refusal, never a crash. Its seeds
// (the shapes that once aborted the service) run with every go test.
func FuzzProcessShapes(f *testing.F) {
	f.Add(uint16(2400), uint16(3), uint8(0), uint16(300), uint16(0), uint8(0), uint8(0))
	f.Add(uint16(20000), uint16(1), uint8(0), uint16(320), uint16(0), uint8(0), uint8(1))
	f.Add(uint16(4000), uint16(6), uint8(0), uint16(480), uint16(0), uint8(0), uint8(2))
	f.Add(uint16(3), uint16(2400), uint8(0), uint16(0), uint16(300), uint8(0), uint8(3))
	f.Add(uint16(20000), uint16(1), uint8(1), uint16(320), uint16(0), uint8(0), uint8(0))
	f.Add(uint16(1), uint16(20000), uint8(1), uint16(0), uint16(0), uint8(0), uint8(1))
	f.Add(uint16(7), uint16(5), uint8(4), uint16(3), uint16(3), uint8(1), uint8(2))
	f.Add(uint16(9), uint16(2), uint8(3), uint16(1), uint16(1), uint8(2), uint8(3))
	inputs := []string{"jpeg", "png", "png16", "gray1", "webp", "avif", "gif"}
	fits := []variant.Fit{variant.FitInside, variant.FitCover, variant.FitFill}
	formats := []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG}
	f.Fuzz(func(t *testing.T, w, h uint16, input uint8, bw, bh uint16, fit, format uint8) {
		width, height := max(int(w)%20001, 1), max(int(h)%20001, 1)
		c := shapeCase{w: width, h: height, input: inputs[int(input)%len(inputs)], format: formats[int(format)%len(formats)]}
		if width*height > 1<<20 || !inputFits(c.input, width, height) {
			t.Skip("outside the small shapes this target makes")
		}
		c.spec = variant.Spec{Width: int(bw) % 9000, Height: int(bh) % 9000, Fit: fits[int(fit)%len(fits)]}
		if c.spec.Fit != variant.FitInside && (c.spec.Width == 0 || c.spec.Height == 0) {
			c.spec.Fit = variant.FitInside
		}
		if err := checkShape(c, shapeImage(c.input, width, height)); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
	})
}
