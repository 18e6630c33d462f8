package imaging

import (
	"errors"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// TestDamagedInputsAreRefused: an image whose data stops early or breaks off
// mid-stream is refused, never encoded with grey or black rows, whatever its
// format (libvips' fail-on-truncated policy, for every loader).
func TestDamagedInputsAreRefused(t *testing.T) {
	jpg := testimages.JPEG(320, 240, 90)
	png := testimages.PNG(320, 240)
	webp := encodeTo(t, jpg, variant.FormatWebP)
	half := func(b []byte) []byte { return append([]byte{}, b[:len(b)/2]...) }
	tests := map[string][]byte{
		"jpeg cut in half":            half(jpg),
		"jpeg cut in half, EOI added": append(half(jpg), 0xFF, 0xD9),
		"png cut in half":             half(png),
		"png cut in half, IEND added": append(half(png), png[len(png)-12:]...),
		"webp cut in half":            half(webp),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			info, err := proc.Probe(data)
			if err != nil {
				if !errors.Is(err, transform.ErrUnsupportedImage) {
					t.Fatalf("Probe = %v, want ErrUnsupportedImage", err)
				}
				return
			}
			for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatPNG} {
				out, err := proc.Process(data, transform.Operation{Spec: resolved(variant.Spec{Width: 160, Format: f}), Source: info})
				if !errors.Is(err, transform.ErrUnsupportedImage) {
					t.Fatalf("Process(%s) = %d bytes, %v; want ErrUnsupportedImage", f, len(out.Data), err)
				}
			}
		})
	}
}

func encodeTo(t *testing.T, data []byte, f variant.Format) []byte {
	t.Helper()
	out, _ := run(t, data, variant.Spec{Format: f})
	return out.Data
}
