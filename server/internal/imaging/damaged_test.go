package imaging

import (
	"bytes"
	"errors"
	"image/color"
	"image/jpeg"
	"slices"
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
	interlaced := fixture(t, "interlaced.png")
	half := func(b []byte) []byte { return append([]byte{}, b[:len(b)/2]...) }
	tests := map[string][]byte{
		"jpeg cut in half":            half(jpg),
		"jpeg cut in half, EOI added": append(half(jpg), 0xFF, 0xD9),
		"png cut in half":             half(png),
		"png cut in half, IEND added": append(half(png), png[len(png)-12:]...),
		"webp cut in half":            half(webp),
		"interlaced png cut in half":  half(interlaced),
		// libvips draws an animation's last frame cut short over the one
		// before, without a warning.
		"animated gif cut in its last frame": testimages.AnimatedGIF(40, 30, 5)[:len(testimages.AnimatedGIF(40, 30, 5))-3],
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
			for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatPNG, variant.FormatWebP} {
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

// TestUltraHDRGivesItsSDRImage: an UltraHDR JPEG (testdata/ultrahdr.jpg,
// 96×64, made by libvips' uhdrsave) carries a gain map, a second JPEG after
// the first, described in MPF and ISO 21496-1 segments; libvips reads it
// with its own loader. A variant, in any format, is the SDR image alone:
// no gain map, no MPF, no gain-map metadata. The gain map cut short does
// not matter, since nothing of it is served.
func TestUltraHDRGivesItsSDRImage(t *testing.T) {
	src := fixture(t, "ultrahdr.jpg")
	gainMap := bytes.Index(src[2:], []byte{0xFF, 0xD8}) + 2 // the second SOI
	if gainMap < 2 || !bytes.Contains(src, []byte("MPF\x00")) || !bytes.Contains(src, []byte("urn:iso:std:iso:ts:21496")) {
		t.Fatal("the fixture is not an UltraHDR JPEG")
	}
	sdr, err := jpeg.Decode(bytes.NewReader(src)) // Go's decoder reads the first image alone
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG} {
		t.Run(f.String(), func(t *testing.T) {
			out, _ := run(t, src, variant.Spec{Format: f, Quality: 95})
			for _, marker := range []string{"MPF\x00", "urn:iso:std:iso:ts:21496", "Exif\x00\x00", "ICC_PROFILE"} {
				if bytes.Contains(out.Data, []byte(marker)) {
					t.Errorf("the %s output carries %q", f, marker)
				}
			}
			if f == variant.FormatJPEG && bytes.Count(out.Data, []byte{0xFF, 0xD8}) != 1 {
				t.Errorf("the JPEG holds %d images, want 1", bytes.Count(out.Data, []byte{0xFF, 0xD8}))
			}
			back, _ := run(t, out.Data, variant.Spec{Format: variant.FormatPNG})
			img, _, err := testimages.Decode(back.Data)
			if err != nil {
				t.Fatal(err)
			}
			if d := testimages.MeanAbsDiff(img, sdr); d > 4 {
				t.Errorf("the %s output differs from the SDR image by %.1f on average", f, d)
			}
		})
	}
	whole, _ := run(t, src, variant.Spec{Format: variant.FormatJPEG, Quality: 80})
	cut, _ := run(t, src[:gainMap+(len(src)-gainMap)/2], variant.Spec{Format: variant.FormatJPEG, Quality: 80})
	if !bytes.Equal(whole.Data, cut.Data) {
		t.Errorf("the gain map cut short changed the variant: %d B against %d B", len(cut.Data), len(whole.Data))
	}
}

// TestJPEGScanLimit: a JPEG whose data comes in more scans than any encoder
// writes is refused at the header, before a decoder walks the whole image
// once per scan; a progressive JPEG of a few scans decodes, and the memory
// it is admitted with counts its whole-image coefficient buffer, which the
// decoder holds however much it shrinks on load.
func TestJPEGScanLimit(t *testing.T) {
	_, err := proc.Probe(testimages.ProgressiveJPEG(1000, 750, 3, true))
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "2649 scans") {
		t.Fatalf("a JPEG in 2,649 scans: %v, want ErrUnsupportedImage naming its scans", err)
	}

	const w, h = 4000, 3000
	few := testimages.ProgressiveJPEG(w, h, 3, false)
	info, err := proc.Probe(few)
	if err != nil {
		t.Fatalf("a progressive JPEG in 6 scans: %v", err)
	}
	op := transform.Operation{Spec: variant.Spec{Format: variant.FormatJPEG, Quality: 80, Width: 720}, Source: info}
	coefficients := int64(w/8) * int64(h/8) * 64 * 2 * 3
	if got := proc.Footprint(op); got < coefficients {
		t.Errorf("footprint %d MiB for a %d×%d progressive JPEG shrunk on load, want at least its %d MiB of coefficients", got>>20, w, h, coefficients>>20)
	}
	out, err := proc.Process(few, op)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := testimages.Decode(out.Data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Width != 720 || out.Height != 540 || !testimages.Near(img.At(360, 270), color.RGBA{128, 128, 128, 255}, 2) {
		t.Errorf("%d×%d, centre %v: want 720×540 mid-grey (every coefficient zero)", out.Width, out.Height, img.At(360, 270))
	}
}

// TestJPEGSegmentLimit: a JPEG carrying more metadata segments than
// libjpeg should keep for libvips (APP1, APP2, APP13; more than any camera
// or profile writes) is refused at the header; up to the limit, the image
// is served, admitted with the memory the segments' copies take. Segments
// libjpeg skips cost nothing and are not counted.
func TestJPEGSegmentLimit(t *testing.T) {
	jpg := testimages.JPEG(320, 240, 90)
	segments := func(marker byte, n, size int) []byte {
		seg := append([]byte{0xFF, marker, byte((size + 2) >> 8), byte(size + 2)}, make([]byte, size)...)
		return append(append(append([]byte{}, jpg[:2]...), bytes.Repeat(seg, n)...), jpg[2:]...)
	}
	tests := []struct {
		name string
		data []byte
		kept int64 // bytes of kept segments, when served
		want error
	}{
		{"1,000 empty APP13 segments", segments(0xED, 1000, 0), 0, nil},
		{"1,001 empty APP13 segments", segments(0xED, 1001, 0), 0, transform.ErrUnsupportedImage},
		{"1,001 empty APP1 segments", segments(0xE1, 1001, 0), 0, transform.ErrUnsupportedImage},
		{"5,000 empty APP5 segments", segments(0xE5, 5000, 0), 0, nil},
		{"200 APP2 segments of 64 KB", segments(0xE2, 200, 65533), 200 * 65533, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probeTakes(t, tt.data, tt.want, "1001 metadata segments", segmentsHeld*tt.kept)
		})
	}
}

// TestRecoveredErrorsStayWithTheirCall: libvips' error buffer is one for
// the process. An image whose ICC profile is corrupt is still served (the
// import falls back to sRGB) but leaves the profile's error there; the next
// image to fail must report its own reason, not that one.
func TestRecoveredErrorsStayWithTheirCall(t *testing.T) {
	jpg := testimages.JPEG(320, 240, 90)
	profile := bytes.Repeat([]byte("not a colour profile "), 40)
	app2 := append([]byte("ICC_PROFILE\x00\x01\x01"), profile...)
	segment := append([]byte{0xFF, 0xE2, byte((len(app2) + 2) >> 8), byte(len(app2) + 2)}, app2...)
	corruptProfile := append(append(append([]byte{}, jpg[:2]...), segment...), jpg[2:]...)
	cut := append([]byte{}, jpg[:len(jpg)/2]...)

	for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatWebP} {
		if out, _ := run(t, corruptProfile, variant.Spec{Width: 160, Format: f}); len(out.Data) == 0 {
			t.Fatalf("%s of a JPEG with a corrupt ICC profile: no output", f)
		}
		info, err := proc.Probe(cut)
		if err != nil {
			t.Fatalf("Probe(half a JPEG) = %v; its header is whole", err)
		}
		_, err = proc.Process(cut, transform.Operation{Spec: resolved(variant.Spec{Width: 160, Format: variant.FormatJPEG}), Source: info})
		if !errors.Is(err, transform.ErrUnsupportedImage) {
			t.Fatalf("Process(half a JPEG) = %v, want ErrUnsupportedImage", err)
		}
		if msg := strings.ToLower(err.Error()); strings.Contains(msg, "icc") || !strings.Contains(msg, "jpeg") {
			t.Errorf("after a %s with a corrupt profile, half a JPEG fails with %q: want its own reason", f, err)
		}
	}
}

// TestJPEGSlipsAreRepaired: a JPEG whose header has stray bytes between its
// segments, or a whole single-scan JPEG that lacks only its end-of-image
// marker, is decoded as the JPEG without the slip (libjpeg warns of both,
// and decodes past them); a progressive JPEG without its end-of-image
// marker, which may have lost whole scans without a decoder noticing, and
// a header of more gaps than any encoder's slip, are still refused.
func TestJPEGSlipsAreRepaired(t *testing.T) {
	spec := resolved(variant.Spec{Width: 160, Format: variant.FormatPNG})
	process := func(data []byte) ([]byte, error) {
		info, err := proc.Probe(data)
		if err != nil {
			return nil, err
		}
		out, err := proc.Process(data, transform.Operation{Spec: spec, Source: info})
		return out.Data, err
	}
	whole := testimages.JPEG(320, 240, 90)
	want, err := process(whole)
	if err != nil {
		t.Fatal(err)
	}
	sof := bytes.Index(whole, []byte{0xFF, 0xC0})
	junk := []byte{0x12, 0x00, 0x34}
	gaps := slices.Clone(whole[:2])
	for range 17 {
		gaps = append(append(gaps, junk...), 0xFF, 0xFE, 0x00, 0x03, 'c') // a comment
	}
	gaps = append(gaps, whole[2:]...)
	jfif := func(major, minor byte) []byte {
		app0 := []byte{0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, major, minor, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}
		return slices.Concat(whole[:2], app0, whole[2:])
	}
	// Some encoders leave a sequential scan's spectral selection and
	// approximation 0 (libjpeg's comment on the warning says so).
	zeroScanParameters := slices.Clone(whole)
	params := bytes.Index(whole, []byte{0xFF, 0xDA}) + 4 + 1 + 2*3
	copy(zeroScanParameters[params:], []byte{0, 0, 0})
	progressive := testimages.ProgressiveJPEG(64, 48, 3, false)
	if _, err := process(progressive); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		decoded bool
	}{
		{"without its end-of-image marker", whole[:len(whole)-2], true},
		{"stray bytes before the frame header", slices.Concat(whole[:sof], junk, whole[sof:]), true},
		{"stray bytes after the start-of-image marker", slices.Concat(whole[:2], junk, whole[2:]), true},
		{"both", slices.Concat(whole[:sof], junk, whole[sof:len(whole)-2]), true},
		{"JFIF 1.02", jfif(1, 2), true},
		{"JFIF 2.01", jfif(2, 1), true},
		{"JFIF 0.00", jfif(0, 0), true},
		{"JFIF 2.01 and stray bytes", slices.Concat(jfif(2, 1)[:sof+18], junk, jfif(2, 1)[sof+18:]), true},
		{"a scan's parameters all 0", zeroScanParameters, true},
		{"17 gaps in the header", gaps, false},
		{"progressive, without its end-of-image marker", progressive[:len(progressive)-2], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := process(tc.data)
			if !tc.decoded {
				if !errors.Is(err, transform.ErrUnsupportedImage) {
					t.Errorf("%d bytes, %v; want ErrUnsupportedImage", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes, %v; want the %d bytes of the JPEG without the slip", len(got), err, len(want))
			}
		})
	}
}

// TestErrorMessage: a refusal says what libvips and its loaders said, once
// each, without the lines that only echo it.
func TestErrorMessage(t *testing.T) {
	for name, tc := range map[string]struct{ buffer, want string }{
		"one line":   {"VipsJpeg: Corrupt JPEG data: bad Huffman code\n", "VipsJpeg: Corrupt JPEG data: bad Huffman code"},
		"repeated":   {"vipspng: libpng read error\nvipspng: libpng read error\n", "vipspng: libpng read error"},
		"two causes": {"VipsJpeg: Bogus marker length\nVipsJpeg: premature end of JPEG image\n", "VipsJpeg: Bogus marker length; VipsJpeg: premature end of JPEG image"},
		"a saver's echo": {
			"VipsJpeg: Corrupt JPEG data: premature end of data segment\nvips2webp: unable to write to target\n",
			"VipsJpeg: Corrupt JPEG data: premature end of data segment",
		},
		"the HEIF loader's seeks": {
			"source: bad seek to 12559\nsource: bad seek to 6420\nheif: Invalid input: Unexpected end of file (2.100)\n",
			"heif: Invalid input: Unexpected end of file (2.100)",
		},
		"nothing said": {"", "the decoder stopped on damaged or truncated data"},
		"only echoes":  {"source: bad seek to 10\n", "the decoder stopped on damaged or truncated data"},
	} {
		if got := errorMessage(tc.buffer); got != tc.want {
			t.Errorf("%s: errorMessage(%q) = %q, want %q", name, tc.buffer, got, tc.want)
		}
	}
	// Through libvips: an AVIF cut short names libheif's reason alone.
	data := fixture(t, "p3.avif")
	_, err := proc.Process(data[:len(data)/2], transform.Operation{Spec: resolved(variant.Spec{Format: variant.FormatJPEG}), Source: transform.ImageInfo{Format: "avif", Width: 64, Height: 48, Bands: 3, SampleBytes: 1, Orientation: 1, Frames: 1}})
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "heif: ") || strings.Contains(err.Error(), "bad seek") {
		t.Errorf("Process of half an AVIF = %v, want libheif's reason without the source's seeks", err)
	}
}
