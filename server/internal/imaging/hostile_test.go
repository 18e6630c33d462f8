package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// rawGIF is a one-frame GIF: a screen of sw×sh and a frame of fw×fh at its
// origin, whose pixel data is a single pixel's.
func rawGIF(sw, sh, fw, fh uint16) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("GIF89a")
	_ = binary.Write(&b, le, [2]uint16{sw, sh})
	b.Write([]byte{0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF}) // two-colour global table
	b.WriteByte(0x2C)
	_ = binary.Write(&b, le, [4]uint16{0, 0, fw, fh})
	b.Write([]byte{0, 2, 2, 0x44, 0x01, 0, 0x3B})
	return b.Bytes()
}

// withFrame rewrites a baseline JPEG's frame header: its marker (SOF0 to
// another process) and its sample precision.
func withFrame(t *testing.T, jpg []byte, marker, precision byte) []byte {
	t.Helper()
	out := append([]byte{}, jpg...)
	for i := 2; i+4 < len(out); {
		if out[i] != 0xFF {
			t.Fatalf("no marker at %d", i)
		}
		if out[i+1] == 0xC0 {
			out[i+1], out[i+4] = marker, precision
			return out
		}
		i += 2 + int(binary.BigEndian.Uint16(out[i+2:]))
	}
	t.Fatal("no SOF0 frame")
	return nil
}

// TestHostileHeaders: what a header claims is what the pixel limit judges
// before anything is decoded, and coding processes the decoder does not
// implement are refused with the decoder's reason, as InvalidArgument
// (ErrUnsupportedImage).
func TestHostileHeaders(t *testing.T) {
	t.Run("size from the header", func(t *testing.T) {
		// A frame larger than its screen is the image's size: the limit
		// refuses it (TestProbe has the PNG bomb).
		if info, err := proc.Probe(rawGIF(1, 1, 60000, 60000)); err != nil || info.Pixels() != 60000*60000 {
			t.Errorf("gif frame 60000×60000 on a 1×1 screen: Probe = %+v, %v; want 3.6 GP", info, err)
		}
		// A screen of 4 GP with one pixel drawn is the pixel drawn: it
		// costs nothing to decode.
		big := rawGIF(65535, 65535, 1, 1)
		if info, err := proc.Probe(big); err != nil || info.Pixels() != 1 {
			t.Errorf("gif screen 65535×65535, one pixel drawn: Probe = %+v, %v; want 1×1", info, err)
		}
		if out, _ := run(t, big, variant.Spec{Format: variant.FormatPNG}); out.Width != 1 || out.Height != 1 {
			t.Errorf("gif screen 65535×65535, one pixel drawn: %d×%d, want 1×1", out.Width, out.Height)
		}
	})

	jpg := testimages.JPEG(96, 64, 90)
	for name, tc := range map[string]struct {
		data    []byte
		why     string
		atProbe bool // refused from the header, before admission
	}{
		"lossless jpeg (SOF3)":     {withFrame(t, jpg, 0xC3, 8), "progressive/lossless", false},
		"12-bit jpeg":              {withFrame(t, jpg, 0xC0, 12), "precision 12", true},
		"16-bit lossless jpeg":     {withFrame(t, jpg, 0xC3, 16), "precision 16", true},
		"hierarchical jpeg (SOF5)": {withFrame(t, jpg, 0xC5, 8), "unsupported jpeg process", false},
		"png whose width is zero":  {testimages.BombPNG(0, 64), "png", true},
	} {
		t.Run(name, func(t *testing.T) {
			info, err := proc.Probe(tc.data)
			if tc.atProbe && err == nil {
				t.Fatalf("Probe = %+v; want it refused from the header", info)
			}
			if err == nil {
				_, err = proc.Process(tc.data, transform.Operation{Spec: resolved(variant.Spec{Width: 48, Format: variant.FormatJPEG}), Source: info})
			}
			if !errors.Is(err, transform.ErrUnsupportedImage) {
				t.Fatalf("= %v, want ErrUnsupportedImage", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), tc.why) {
				t.Errorf("= %q, want the reason (%q)", err, tc.why)
			}
		})
	}

	// An orientation outside 1–8 is no orientation: the image is served
	// as stored, not turned.
	for _, o := range []uint16{0, 9, 65535} {
		out, _ := run(t, testimages.WithOrientation(jpg, o), variant.Spec{Width: 48, Format: variant.FormatJPEG})
		if out.Width != 48 || out.Height != 32 {
			t.Errorf("orientation %d: %d×%d, want 48×32 (as stored)", o, out.Width, out.Height)
		}
	}
}
