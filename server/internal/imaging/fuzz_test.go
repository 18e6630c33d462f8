package imaging

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
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
	fits := []variant.Fit{variant.FitInside, variant.FitCover, variant.FitFill}
	formats := []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG}
	f.Fuzz(func(t *testing.T, w, h uint16, input uint8, bw, bh uint16, fit, format uint8) {
		width, height := max(int(w)%20001, 1), max(int(h)%20001, 1)
		c := shapeCase{w: width, h: height, input: sweepInputs[int(input)%len(sweepInputs)], format: formats[int(format)%len(formats)]}
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

// FuzzDecode feeds arbitrary bytes to the decoders — the service's widest
// parser surface, reached by any original put in the bucket. Whatever the
// bytes, Probe and Process answer with a variant of the planned size or
// with ErrUnsupportedImage / ErrInvalidArgument (ErrTooLargeForFormat when
// the variant is past its format's side, ErrTooLarge from a header past
// libvips' largest side), never a crash. The seeds
// are one small image of each input format, whole and damaged; headers
// claiming more than 4 MP are skipped (the service refuses them by the
// header alone, before decoding).
func FuzzDecode(f *testing.F) {
	for _, input := range sweepInputs {
		img := shapeImage(input, 33, 17)
		f.Add(img, uint8(0))
		f.Add(img[:len(img)*2/3], uint8(1))
	}
	f.Add(testimages.WithOrientation(testimages.JPEG(40, 24, 90), 6), uint8(2))
	noEOI := testimages.JPEG(40, 24, 90)
	f.Add(noEOI[:len(noEOI)-2], uint8(0)) // decoded as if it had it
	jfif := []byte{0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 2, 1, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}
	f.Add(slices.Concat(noEOI[:2], jfif, noEOI[2:]), uint8(0)) // JFIF 2.01: decoded as 1.01
	zeroScan := slices.Clone(noEOI)
	copy(zeroScan[bytes.Index(zeroScan, []byte{0xFF, 0xDA})+4+1+2*3:], []byte{0, 0, 0})
	f.Add(zeroScan, uint8(0)) // a sequential scan's parameters all 0
	// Animations, as WebP: every frame decoded and fitted.
	f.Add(shapeImage("animated-gif", 33, 17), uint8(1))
	f.Add(fixture(f, "animated.webp"), uint8(1))
	for _, name := range []string{"cmyk.jpg", "photo.heic", "interlaced.png", "ultrahdr.jpg", "pq-alpha.avif", "hlg.avif", "animated.avif"} {
		f.Add(fixture(f, name), uint8(3))
	}
	f.Add(testimages.HDRPNG(40, 30), uint8(1)) // 16 bits, PQ in cICP
	// Profiles whose float tags lcms builds the colour transform from.
	f.Add(testimages.WithAPP2Profile(testimages.JPEG(40, 24, 90), testimages.FloatProfile(6)), uint8(0))
	f.Add(testimages.WithICCP(testimages.PNG(40, 24), testimages.FloatProfile(3)), uint8(2))
	formats := []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG}
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		if len(data) == 0 {
			return
		}
		info, err := sweepProc.Probe(data)
		if err != nil {
			if !errors.Is(err, transform.ErrUnsupportedImage) && !errors.Is(err, transform.ErrTooLarge) {
				t.Fatalf("Probe: %v, want ErrUnsupportedImage or ErrTooLarge", err)
			}
			return
		}
		if info.Pixels()*int64(max(info.Frames, 1)) > 1<<22 {
			t.Skip("a header larger than this target decodes")
		}
		spec := variant.Spec{Width: 64, Format: formats[int(format)%len(formats)], Quality: 60}
		upW, upH := info.Width, info.Height
		if info.Orientation >= 5 {
			upW, upH = upH, upW
		}
		wantW, wantH := targetSize(spec, upW, upH)
		out, err := sweepProc.Process(data, transform.Operation{Spec: spec, Source: info})
		if err != nil {
			tooLarge := max(wantW, wantH) > maxSide[spec.Format]
			if errors.Is(err, transform.ErrTooLargeForFormat) != tooLarge ||
				!tooLarge && !errors.Is(err, transform.ErrUnsupportedImage) && !errors.Is(err, transform.ErrInvalidArgument) {
				t.Fatalf("Process (want %d×%d): %v, want ErrUnsupportedImage or ErrInvalidArgument, or ErrTooLargeForFormat past the format's side", wantW, wantH, err)
			}
			return
		}
		// An animation keeps its frames, less those that repeat the frame
		// before (libwebp merges them, adding up their delays).
		maxFrames := 1
		if info.AnimatesAs(spec.Format) {
			maxFrames = info.Frames
		}
		got, err := sweepProc.Probe(out.Data)
		if err != nil || got.Format != spec.Format.String() || got.Width != wantW || got.Height != wantH || max(got.Frames, 1) > maxFrames {
			t.Fatalf("the output is %+v (%v), want %s %d×%d of at most %d frames", got, err, spec.Format, wantW, wantH, maxFrames)
		}
	})
}
