package imaging

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
	// libpng reads an interlaced PNG whole; cut short, it stops on a
	// warning and leaves libvips' error buffer empty.
	interlaced, err := os.ReadFile(filepath.Join("testdata", "interlaced.png"))
	if err != nil {
		t.Fatal(err)
	}
	half := func(b []byte) []byte { return append([]byte{}, b[:len(b)/2]...) }
	tests := map[string][]byte{
		"jpeg cut in half":            half(jpg),
		"jpeg cut in half, EOI added": append(half(jpg), 0xFF, 0xD9),
		"png cut in half":             half(png),
		"png cut in half, IEND added": append(half(png), png[len(png)-12:]...),
		"webp cut in half":            half(webp),
		"interlaced png cut in half":  half(interlaced),
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
				// The caller is told why, not only that it failed.
				if why := strings.TrimPrefix(err.Error(), transform.ErrUnsupportedImage.Error()+": "); strings.TrimSpace(why) == "" {
					t.Errorf("Process(%s) failed without a reason: %q", f, err)
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

// TestNoMetadataLeaves: whatever the output format, no EXIF (GPS lives in
// it), XMP or ICC profile from the source survives.
func TestNoMetadataLeaves(t *testing.T) {
	src := testimages.WithOrientation(testimages.JPEG(320, 240, 90), 1)
	xmp := append([]byte{0xFF, 0xE1, 0x00, 0x00}, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>secret place</x:xmpmeta>")...)
	xmp[2], xmp[3] = byte((len(xmp)-2)>>8), byte(len(xmp)-2)
	src = append(append(append([]byte{}, src[:2]...), xmp...), src[2:]...)
	if info, err := proc.Probe(src); err != nil || !bytes.Contains(src, []byte("Exif\x00\x00")) || !bytes.Contains(src, []byte("secret place")) {
		t.Fatalf("the source lacks its metadata: %+v, %v", info, err)
	}
	keeper := New(Config{AVIFSpeed: 8, KeepMetadata: true})
	kept, err := keeper.Process(src, transform.Operation{Spec: resolved(variant.Spec{Width: 200, Format: variant.FormatJPEG}), Source: transform.ImageInfo{Format: "jpeg", Width: 320, Height: 240, Bands: 3, SampleBytes: 1, Orientation: 1}})
	if err != nil || !bytes.Contains(kept.Data, []byte("Exif\x00\x00")) {
		t.Fatalf("--keep-metadata dropped the EXIF too (%v): this test would not see a leak", err)
	}
	for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG} {
		t.Run(f.String(), func(t *testing.T) {
			out, _ := run(t, src, variant.Spec{Width: 200, Format: f})
			for _, marker := range []string{"Exif\x00\x00", "EXIF", "ns.adobe.com/xap", "secret place", "eXIf", "iCCP", "ICC_PROFILE"} {
				if bytes.Contains(out.Data, []byte(marker)) {
					t.Errorf("the %s output carries %q", f, marker)
				}
			}
		})
	}
}
