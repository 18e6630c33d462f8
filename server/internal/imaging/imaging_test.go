package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/jpegscan"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

var proc = New(Config{AVIFSpeed: 8})

// fixture is a file of testdata, which the repository ships.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func resolved(s variant.Spec) variant.Spec {
	return s.Resolve(variant.ClassJPEG, variant.Defaults{Quality: map[variant.Format]int{variant.FormatJPEG: 80, variant.FormatWebP: 75, variant.FormatAVIF: 50}})[0]
}

func run(t *testing.T, data []byte, spec variant.Spec) (transform.Output, image.Image) {
	t.Helper()
	info, err := proc.Probe(data)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	out, err := proc.Process(data, transform.Operation{Spec: resolved(spec), Source: info})
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	var img image.Image
	if spec.Format == variant.FormatJPEG || spec.Format == variant.FormatPNG {
		if img, _, err = testimages.Decode(out.Data); err != nil {
			t.Fatalf("the output does not decode: %v", err)
		}
		if img.Bounds().Dx() != out.Width || img.Bounds().Dy() != out.Height {
			t.Fatalf("reported %d×%d, decoded %v", out.Width, out.Height, img.Bounds())
		}
	}
	return out, img
}

// probeTakes checks what Probe makes of data, an image whose top-left
// quadrant is testimages.TopLeft: refused with want, its message naming
// naming; or, for want nil, taken with at least held bytes in its decode
// buffer, and converted with its colour.
func probeTakes(t *testing.T, data []byte, want error, naming string, held int64) {
	t.Helper()
	info, err := proc.Probe(data)
	if !errors.Is(err, want) || (want != nil && !strings.Contains(err.Error(), naming)) {
		t.Fatalf("Probe: %v, want %v naming %q", err, want, naming)
	}
	if want != nil {
		return
	}
	if info.DecodeBuffer < held {
		t.Errorf("decode buffer %d bytes: %d not counted", info.DecodeBuffer, held)
	}
	out, img := run(t, data, variant.Spec{Width: 160, Format: variant.FormatJPEG, Quality: 90})
	if out.Width != 160 || !testimages.Near(img.At(20, 20), testimages.TopLeft, 24) {
		t.Errorf("%d px wide, top-left %v: want 160, near %v", out.Width, img.At(20, 20), testimages.TopLeft)
	}
}

func TestProbe(t *testing.T) {
	info, err := proc.Probe(testimages.WithOrientation(testimages.JPEG(64, 48, 90), 6))
	if err != nil {
		t.Fatal(err)
	}
	// DecodeBuffer: the EXIF segment's 32 bytes, which libjpeg keeps.
	if info != (transform.ImageInfo{Format: "jpeg", Width: 64, Height: 48, Bands: 3, SampleBytes: 1, Orientation: 6, Frames: 1, DecodeBuffer: segmentsHeld * 32}) {
		t.Errorf("Probe = %+v", info)
	}
	info, err = proc.Probe(testimages.PNG(30, 20))
	if err != nil || !info.Alpha || info.Format != "png" {
		t.Errorf("Probe(png) = %+v, %v; want png with alpha", info, err)
	}
	info, err = proc.Probe(testimages.BombPNG(30000, 30000))
	if err != nil || info.Pixels() != 900_000_000 {
		t.Errorf("Probe(bomb) = %+v, %v; want the claimed 30000×30000 from the header", info, err)
	}
}

func TestProbeRejects(t *testing.T) {
	jpg := testimages.JPEG(200, 150, 85)
	tests := map[string][]byte{
		"empty":          {},
		"text named jpg": []byte("this is not an image, just text\n"),
		"jpeg header":    jpg[:20],
		"svg":            []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := proc.Probe(data); !errors.Is(err, transform.ErrUnsupportedImage) {
				t.Fatalf("Probe = %v, want ErrUnsupportedImage", err)
			}
		})
	}
}

func TestResize(t *testing.T) {
	src := testimages.JPEG(1600, 1200, 90)
	tests := []struct {
		name string
		spec variant.Spec
		w, h int
	}{
		{"width only", variant.Spec{Width: 720, Format: variant.FormatJPEG}, 720, 540},
		{"height only", variant.Spec{Height: 300, Format: variant.FormatJPEG}, 400, 300},
		{"inside box", variant.Spec{Width: 500, Height: 500, Format: variant.FormatPNG}, 500, 375},
		{"cover", variant.Spec{Width: 300, Height: 300, Fit: variant.FitCover, Format: variant.FormatJPEG}, 300, 300},
		{"fill", variant.Spec{Width: 200, Height: 50, Fit: variant.FitFill, Format: variant.FormatJPEG}, 200, 50},
		{"never enlarges", variant.Spec{Width: 3200, Format: variant.FormatJPEG}, 1600, 1200},
		{"same size", variant.Spec{Format: variant.FormatJPEG, Quality: 90}, 1600, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, img := run(t, src, tt.spec)
			if out.Width != tt.w || out.Height != tt.h {
				t.Fatalf("got %d×%d, want %d×%d", out.Width, out.Height, tt.w, tt.h)
			}
			if tt.spec.Fit == variant.FitFill {
				return
			}
			assertQuadrants(t, img, 0)
		})
	}
}

// assertQuadrants checks the quadrant centres against the source colours,
// after EXIF orientation o is applied to the source layout.
func assertQuadrants(t *testing.T, img image.Image, o int) {
	t.Helper()
	b := img.Bounds()
	for _, q := range [][2]float64{{0.25, 0.25}, {0.75, 0.25}, {0.25, 0.75}, {0.75, 0.75}} {
		x, y := int(q[0]*float64(b.Dx())), int(q[1]*float64(b.Dy()))
		sx, sy := storedPosition(q[0], q[1], o)
		want := quadrantColour(sx, sy)
		if !testimages.Near(img.At(x, y), want, 60) {
			t.Errorf("orientation %d: pixel at (%.2f, %.2f) is %v, want about %v", o, q[0], q[1], img.At(x, y), want)
		}
	}
}

// storedPosition maps a relative position in the upright image to the stored
// image, per the EXIF orientation definitions.
func storedPosition(x, y float64, o int) (float64, float64) {
	switch o {
	case 2:
		return 1 - x, y
	case 3:
		return 1 - x, 1 - y
	case 4:
		return x, 1 - y
	case 5:
		return y, x
	case 6:
		return y, 1 - x
	case 7:
		return 1 - y, 1 - x
	case 8:
		return 1 - y, x
	}
	return x, y
}

func quadrantColour(x, y float64) color.RGBA {
	switch {
	case x < 0.5 && y < 0.5:
		return testimages.TopLeft
	case y < 0.5:
		return testimages.TopRight
	case x < 0.5:
		return testimages.BottomLeft
	}
	return testimages.BottomRight
}

func TestEXIFOrientation(t *testing.T) {
	src := testimages.JPEG(800, 400, 92)
	for o := 1; o <= 8; o++ {
		t.Run(fmt.Sprint(o), func(t *testing.T) {
			data := testimages.WithOrientation(src, uint16(o))
			out, img := run(t, data, variant.Spec{Width: 200, Format: variant.FormatJPEG})
			wantW, wantH := 200, 100
			if o >= 5 {
				wantW, wantH = 200, 400
			}
			if out.Width != wantW || out.Height != wantH {
				t.Fatalf("got %d×%d, want %d×%d", out.Width, out.Height, wantW, wantH)
			}
			assertQuadrants(t, img, o)
			if bytes.Contains(out.Data, []byte("Exif\x00\x00")) {
				t.Error("the output still carries EXIF metadata")
			}
		})
	}
}

func TestFormats(t *testing.T) {
	src := testimages.JPEG(640, 480, 90)
	for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG} {
		t.Run(f.String(), func(t *testing.T) {
			out, _ := run(t, src, variant.Spec{Width: 320, Format: f})
			info, err := proc.Probe(out.Data)
			if err != nil {
				t.Fatalf("the output does not probe: %v", err)
			}
			if info.Format != f.String() || info.Width != 320 || info.Height != 240 {
				t.Errorf("output is %+v, want %s 320×240", info, f)
			}
		})
	}
}

func TestProgressiveJPEG(t *testing.T) {
	out, _ := run(t, testimages.JPEG(320, 240, 90), variant.Spec{Format: variant.FormatJPEG, Progressive: true})
	if !bytes.Contains(out.Data, []byte{0xFF, 0xC2}) {
		t.Error("no progressive (SOF2) frame in a progressive JPEG")
	}
}

func TestAlphaFlattensWhiteForJPEG(t *testing.T) {
	_, img := run(t, testimages.PNG(200, 100), variant.Spec{Format: variant.FormatJPEG})
	if c := img.At(150, 50); !testimages.Near(c, color.RGBA{255, 255, 255, 255}, 8) {
		t.Errorf("transparent area became %v, want white", c)
	}
	if c := img.At(50, 25); !testimages.Near(c, testimages.TopLeft, 60) {
		t.Errorf("opaque area became %v, want about %v", c, testimages.TopLeft)
	}
}

func TestResizeKeepsPixels(t *testing.T) {
	// Golden check on decoded pixels, not encoder bytes: a same-size JPEG
	// recompression stays close to the source.
	src := testimages.JPEG(400, 300, 95)
	_, img := run(t, src, variant.Spec{Format: variant.FormatPNG})
	orig, _, err := testimages.Decode(src)
	if err != nil {
		t.Fatal(err)
	}
	if d := testimages.MeanAbsDiff(orig, img); d > 1.5 {
		t.Errorf("lossless re-encode differs from the source by %.2f per channel", d)
	}
	_, jpg := run(t, src, variant.Spec{Format: variant.FormatJPEG, Quality: 80})
	if d := testimages.MeanAbsDiff(orig, jpg); d > 6 {
		t.Errorf("q80 re-encode differs from the source by %.2f per channel", d)
	}
}

// A CMYK JPEG as print workflows and Photoshop write it (Adobe marker,
// inverted channels, no ICC profile) comes out as sRGB with the colours of
// its RGB twin: testdata holds both, made from the same 96×78 pixels. A
// decode that missed the inversion is 135 levels per channel off; the round
// trip through CMYK and libvips' fallback profile costs 12–14.
func TestCMYKSource(t *testing.T) {
	cmyk := fixture(t, "cmyk.jpg")
	twin := fixture(t, "cmyk-rgb-twin.jpg")
	info, err := proc.Probe(cmyk)
	if err != nil || info.Bands != 4 {
		t.Fatalf("Probe = %+v, %v; want a 4-band JPEG", info, err)
	}
	_, want := run(t, twin, variant.Spec{Format: variant.FormatPNG})
	for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG} {
		out, _ := run(t, cmyk, variant.Spec{Format: f})
		got, err := proc.Probe(out.Data)
		if err != nil || got.Bands != 3 {
			t.Errorf("%s: the output is %+v, %v; want 3-band sRGB", f, got, err)
			continue
		}
		// Every format decoded the same way for the comparison.
		_, img := run(t, out.Data, variant.Spec{Format: variant.FormatPNG})
		if d := testimages.MeanAbsDiff(want, img); d > 20 {
			t.Errorf("%s: differs from the RGB twin by %.1f per channel", f, d)
		}
	}
}

// A HEIC photo (HEVC-coded HEIF) is decoded when libvips has an HEVC
// decoder (Debian's build), and refused at Probe, saying why, when it has
// none (sharp's build, the default) — never accepted by Probe and then
// failed by the decode.
func TestHEICAnswersAtProbe(t *testing.T) {
	heic := fixture(t, "photo.heic")
	info, err := proc.Probe(heic)
	if err != nil {
		if decodesHEVC() {
			t.Fatalf("Probe refused a HEIC this libvips decodes: %v", err)
		}
		if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "HEVC") {
			t.Fatalf("Probe = %v; want ErrUnsupportedImage naming HEVC", err)
		}
		t.Logf("libvips %s has no HEVC decoder: %v", Version(), err)
		return
	}
	if info.Format != "heif" || info.Width != 96 || info.Height != 78 {
		t.Errorf("Probe = %+v, want a 96×78 heif", info)
	}
	if out, _ := run(t, heic, variant.Spec{Width: 48, Format: variant.FormatJPEG}); out.Width != 48 {
		t.Errorf("the variant is %d px wide, want 48", out.Width)
	}
}

func TestSelfTest(t *testing.T) {
	if err := proc.SelfTest(); err != nil {
		t.Fatal(err)
	}
}

func TestWebPEffortBySize(t *testing.T) {
	for _, tt := range []struct {
		pixels, effort int
	}{
		{720 * 540, 4},
		{4032 * 3024, 4}, // a 12 MP phone photo
		{4000 * 3000, 4},
		{4000 * 6000, 2}, // 24 MP
		{7000 * 7000, 2}, // the 50 MP source limit
	} {
		if got := webpEffortFor(tt.pixels); got != tt.effort {
			t.Errorf("%d pixels: effort %d, want %d", tt.pixels, got, tt.effort)
		}
	}
	if New(Config{WebPEffort: 6}).webpEffort(50_000_000) != 6 {
		t.Error("a configured effort is not kept")
	}
	// The effort reaches libwebp: its fastest and its default method
	// encode the same photo differently.
	src := testimages.JPEG(640, 480, 90)
	info, err := proc.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, effort := range []int{0, 4} {
		out, err := New(Config{WebPEffort: effort}).Process(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatWebP, Quality: 75}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(out.Data))
	}
	if sizes[0] == sizes[1] {
		t.Errorf("methods 0 and 4 both gave %d bytes", sizes[0])
	}
}

func TestAVIFEncodingBySize(t *testing.T) {
	for _, tt := range []struct {
		pixels int
		want   avifEncoding
	}{
		{720 * 540, avifEncoding{speed: 6, bitDepth: 10}},
		{1600 * 1200, avifEncoding{speed: 6, bitDepth: 10}}, // 1.9 MP
		{1920 * 1440, avifEncoding{speed: 6, bitDepth: 8}},  // 2.8 MP
		{2725 * 2225, avifEncoding{speed: 8, bitDepth: 8}},  // 6 MP
		{4032 * 3024, avifEncoding{speed: 9, bitDepth: 8}},  // a 12 MP phone photo
		{7000 * 7000, avifEncoding{speed: 9, bitDepth: 8}},  // the 50 MP source limit
	} {
		if got := avifEncodingFor(tt.pixels); got != tt.want {
			t.Errorf("%d pixels: %+v, want %+v", tt.pixels, got, tt.want)
		}
	}
	fixed := New(Config{AVIFSpeed: 7})
	if got := fixed.avifEncoding(50_000_000); got != (avifEncoding{speed: 7, bitDepth: 8}) {
		t.Errorf("a configured speed gives %+v, want speed 7 at 8 bits", got)
	}

	// What the encoder writes: a 10-bit AVIF decodes to 16-bit samples.
	src := testimages.JPEG(640, 480, 90)
	for _, tt := range []struct {
		name        string
		p           *Processor
		sampleBytes int
	}{
		{"by size", New(Config{AVIFSpeed: AVIFSpeedBySize}), 2},
		{"configured speed", New(Config{AVIFSpeed: 6}), 1},
	} {
		srcInfo, err := tt.p.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		out, err := tt.p.Process(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatAVIF, Quality: 60}, Source: srcInfo})
		if err != nil {
			t.Fatal(err)
		}
		info, err := tt.p.Probe(out.Data)
		if err != nil {
			t.Fatal(err)
		}
		if info.SampleBytes != tt.sampleBytes {
			t.Errorf("%s: the AVIF decodes to %d-byte samples, want %d", tt.name, info.SampleBytes, tt.sampleBytes)
		}
	}
}

// TestAVIFSearchSpeedFollowsTheContent: a search whose output the size rule
// would encode at speed 8 measures the content on its first trial. An easy
// photo-like image is searched and encoded at speed 6 and 10 bits (its
// final encode is byte for byte that encoding's); noise, which would cost
// too much there, keeps the size's speed 8, and so does any configured
// speed.
func TestAVIFSearchSpeedFollowsTheContent(t *testing.T) {
	const w, h = 1800, 1800 // 3.2 MP: speed 8 by size
	spec := variant.Spec{Format: variant.FormatAVIF, Quality: 62, AutoQuality: true}
	prepare := func(p *Processor, src []byte) *prepared {
		t.Helper()
		info, err := p.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := p.Prepare(src, transform.Operation{Spec: spec, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		return pr.(*prepared)
	}
	search := func(p *Processor, src []byte) *prepared {
		t.Helper()
		pr := prepare(p, src)
		if _, _, err := pr.Trial(spec); err != nil {
			t.Fatal(err)
		}
		return pr
	}
	if got := avifEncodingFor(w * h); got != (avifEncoding{speed: 8, bitDepth: 8}) {
		t.Fatalf("%d×%d is %+v by size, not speed 8 at 8 bits", w, h, got)
	}
	bySize := New(Config{AVIFSpeed: AVIFSpeedBySize})
	photo := testimages.JPEG(w, h, 90)
	for _, tt := range []struct {
		name string
		p    *Processor
		src  []byte
		want avifEncoding
	}{
		{"photo", bySize, photo, avifEncoding{speed: 6, bitDepth: 10}},
		{"noise", bySize, testimages.NoiseJPEG(w, h, 90), avifEncoding{speed: 8, bitDepth: 8}},
		{"photo at a configured speed", New(Config{AVIFSpeed: 9}), photo, avifEncoding{speed: 9, bitDepth: 8}},
	} {
		pr := search(tt.p, tt.src)
		if pr.mosaic == nil {
			t.Fatalf("%s: no mosaic: the trial judged the whole image", tt.name)
		}
		if pr.avif != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, pr.avif, tt.want)
		}
	}
	settled, err := search(bySize, photo).Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	at6 := prepare(bySize, photo)
	at6.avif, at6.avifSettled = avifEncoding{speed: 6, bitDepth: 10}, true
	want, err := at6.Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(settled.Data, want.Data) {
		t.Errorf("the final encode (%d B) is not speed 6's at 10 bits (%d B)", len(settled.Data), len(want.Data))
	}
}

// jpegFrame reads a JPEG's frame header: whether it is progressive and the
// luma component's sampling factors (0x22: chroma 4:2:0, 0x11: full).
func jpegFrame(t *testing.T, data []byte) (progressive bool, lumaSampling byte) {
	t.Helper()
	info, err := jpegscan.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Components[0]
	return info.Progressive, byte(c.H<<4 | c.V)
}

// lumaTableRow is the first row of the luma quant table a JPEG stores
// (zig-zag positions 0, 1, 5, 6, 14, 15, 27, 28).
func lumaTableRow(t *testing.T, data []byte) [8]uint16 {
	t.Helper()
	info, err := jpegscan.Read(data)
	if err != nil || info.QuantTables[0] == nil {
		t.Fatalf("no luma table: %v", err)
	}
	var row [8]uint16
	for k, zz := range [8]int{0, 1, 5, 6, 14, 15, 27, 28} {
		row[k] = info.QuantTables[0][zz]
	}
	return row
}

// scaledRow is the first row of one of mozjpeg's luma tables at quality q,
// scaled as libjpeg scales it.
func scaledRow(base [8]uint16, q int) [8]uint16 {
	scale := 200 - 2*q
	if q < 50 {
		scale = 5000 / q
	}
	var row [8]uint16
	for k, v := range base {
		row[k] = uint16(max(1, min(255, (int(v)*scale+50)/100)))
	}
	return row
}

func TestJPEGTuning(t *testing.T) {
	src := testimages.JPEG(320, 240, 95)
	for _, c := range []struct {
		name            string
		tuning          JPEGTuning
		spec            variant.Spec
		wantProgressive bool
		wantSampling    byte
	}{
		{"plain q80", JPEGTuning{}, variant.Spec{Quality: 80}, false, 0x22},
		{"plain q90: libvips keeps full chroma", JPEGTuning{}, variant.Spec{Quality: 90}, false, 0x11},
		{"spec asks progressive", JPEGTuning{}, variant.Spec{Quality: 80, Progressive: true}, true, 0x22},
		{"mozjpeg q90 subsamples", MozJPEG, variant.Spec{Quality: 90}, false, 0x22},
		{"mozjpeg q94 subsamples", MozJPEG, variant.Spec{Quality: 94}, false, 0x22},
		{"mozjpeg q95 keeps full chroma", MozJPEG, variant.Spec{Quality: 95}, false, 0x11},
		{"progressive by default", JPEGTuning{Progressive: true}, variant.Spec{Quality: 80}, true, 0x22},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := New(Config{JPEG: c.tuning})
			info, err := p.Probe(src)
			if err != nil {
				t.Fatal(err)
			}
			c.spec.Format = variant.FormatJPEG
			out, err := p.Process(src, transform.Operation{Spec: c.spec, Source: info})
			if err != nil {
				t.Fatal(err)
			}
			progressive, sampling := jpegFrame(t, out.Data)
			if progressive != c.wantProgressive || sampling != c.wantSampling {
				t.Errorf("progressive %v, luma sampling %#x; want %v, %#x", progressive, sampling, c.wantProgressive, c.wantSampling)
			}
		})
	}
}

// TestMozJPEGTables: mozjpeg's table 5 below q88, its table 2 from q88.
func TestMozJPEGTables(t *testing.T) {
	src := testimages.JPEG(320, 240, 95)
	table5 := [8]uint16{10, 12, 14, 19, 26, 38, 57, 86} // mozjpeg's jcparam.c
	table2 := [8]uint16{12, 17, 20, 21, 30, 34, 56, 63}
	p := New(Config{JPEG: MozJPEG})
	info, err := p.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    int
		base [8]uint16
	}{{50, table5}, {80, table5}, {87, table5}, {88, table2}, {95, table2}} {
		out, err := p.Process(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatJPEG, Quality: c.q}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := lumaTableRow(t, out.Data), scaledRow(c.base, c.q); got != want {
			t.Errorf("q%d: luma table starts %v, want %v", c.q, got, want)
		}
	}
}

// TestFootprintCoversMeasuredPeaks: the memory admission reserves is at
// least what each kind of job was measured to use at its peak (VmHWM over
// the process before the job, libvips 8.18.7 on this project's machine),
// and not so much more that it refuses what fits: a same-size auto-quality
// recompression of a 24 MP photo fits the default budget's 576 MiB.
func TestFootprintCoversMeasuredPeaks(t *testing.T) {
	p := New(Config{AVIFSpeed: AVIFSpeedBySize, WebPEffort: WebPEffortBySize})
	rgb := func(format string, w, h int) transform.ImageInfo {
		return transform.ImageInfo{Format: format, Width: w, Height: h, Bands: 3, SampleBytes: 1}
	}
	progressive := rgb("jpeg", 7000, 7000)
	progressive.DecodeBuffer = 875 * 875 * 128 * 3
	gif := rgb("gif", 3600, 3600)
	gif.DecodeBuffer = 3600 * 3600 * 4
	jpeg24 := rgb("jpeg", 4000, 6000)
	spec := func(f variant.Format, w int, auto bool) variant.Spec {
		return variant.Spec{Format: f, Quality: 50, Width: w, AutoQuality: auto}
	}
	const mb = 1_000_000
	for _, tt := range []struct {
		name     string
		src      transform.ImageInfo
		spec     variant.Spec
		measured int64
	}{
		{"36 MP AVIF to 720 px", rgb("avif", 6000, 6000), spec(variant.FormatJPEG, 720, false), 565 * mb},
		{"36 MP AVIF, same size", rgb("avif", 6000, 6000), spec(variant.FormatJPEG, 0, false), 563 * mb},
		{"36 MP WebP to 720 px", rgb("webp", 6000, 6000), spec(variant.FormatJPEG, 720, false), 291 * mb},
		{"36 MP WebP, same size", rgb("webp", 6000, 6000), spec(variant.FormatJPEG, 0, false), 335 * mb},
		{"13 MP GIF to 720 px", gif, spec(variant.FormatJPEG, 720, false), 76 * mb},
		{"13 MP GIF, same size", gif, spec(variant.FormatJPEG, 0, false), 161 * mb},
		{"49 MP progressive JPEG to 720 px", progressive, spec(variant.FormatJPEG, 720, false), 288 * mb},
		{"49 MP progressive JPEG, same size", progressive, spec(variant.FormatJPEG, 0, false), 731 * mb},
		{"24 MP to AVIF, same size", jpeg24, spec(variant.FormatAVIF, 0, false), 478 * mb},
		{"24 MP to AVIF, 2800 px", jpeg24, spec(variant.FormatAVIF, 2800, false), 235 * mb},
		{"24 MP auto JPEG, 720 px", jpeg24, spec(variant.FormatJPEG, 720, true), 89 * mb},
		{"24 MP auto AVIF, 720 px", jpeg24, spec(variant.FormatAVIF, 720, true), 102 * mb},
		{"24 MP auto JPEG, same size", jpeg24, spec(variant.FormatJPEG, 0, true), 327 * mb},
		{"24 MP auto WebP, same size", jpeg24, spec(variant.FormatWebP, 0, true), 407 * mb},
		{"24 MP auto AVIF, same size", jpeg24, spec(variant.FormatAVIF, 0, true), 708 * mb},
	} {
		got := p.Footprint(transform.Operation{Spec: tt.spec, Source: tt.src})
		if got < tt.measured || got > tt.measured*17/10 {
			t.Errorf("%s: footprint %d MB, measured peak %d MB", tt.name, got/mb, tt.measured/mb)
		}
	}
	if got := p.Footprint(transform.Operation{Spec: spec(variant.FormatJPEG, 0, true), Source: jpeg24}); got > 576<<20 {
		t.Errorf("a same-size auto JPEG of a 24 MP photo needs %d MB: more than the default budget", got/mb)
	}
	phone := rgb("jpeg", 4032, 3024)
	if got := p.Footprint(transform.Operation{Spec: spec(variant.FormatAVIF, 0, true), Source: phone}); got > 576<<20 {
		t.Errorf("a same-size auto AVIF of a 12 MP photo needs %d MB: more than the default budget", got/mb)
	}
	// Where a search may settle at 10 bits, aom's larger frames are counted.
	six := rgb("jpeg", 3000, 2000)
	fixed := p.Footprint(transform.Operation{Spec: spec(variant.FormatAVIF, 0, false), Source: six})
	searched := p.Footprint(transform.Operation{Spec: spec(variant.FormatAVIF, 0, true), Source: six})
	if autoExtra := int64(3000 * 2000 * (4 + 12)); searched-fixed < autoExtra+int64(mosaicPixels(scoreTiles))*110 {
		t.Errorf("a same-size auto AVIF of a 6 MP photo counts %d MB over a fixed one: not its 10-bit frames", (searched-fixed)/mb)
	}
}

// TestFits: the format's side limit is judged from the header, on the
// upright image and the output's size.
func TestFits(t *testing.T) {
	long := transform.ImageInfo{Format: "jpeg", Width: 20000, Height: 255, Orientation: 1}
	sideways := transform.ImageInfo{Format: "jpeg", Width: 255, Height: 20000, Orientation: 6}
	for _, tc := range []struct {
		name string
		src  transform.ImageInfo
		spec variant.Spec
		fits bool
	}{
		{"JPEG stores 20000 px", long, variant.Spec{Format: variant.FormatJPEG}, true},
		{"AVIF does not", long, variant.Spec{Format: variant.FormatAVIF}, false},
		{"WebP does not", long, variant.Spec{Format: variant.FormatWebP}, false},
		{"WebP at width 16000", long, variant.Spec{Width: 16000, Format: variant.FormatWebP}, true},
		{"on its side, upright 20000 wide", sideways, variant.Spec{Format: variant.FormatAVIF}, false},
		{"on its side, to 300 wide", sideways, variant.Spec{Width: 300, Format: variant.FormatAVIF}, true},
		{"filled to 16384×16384", long, variant.Spec{Width: 16384, Height: 16384, Fit: variant.FitFill, Format: variant.FormatAVIF}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := proc.Fits(transform.Operation{Spec: tc.spec, Source: tc.src})
			if (err == nil) != tc.fits || err != nil && !errors.Is(err, transform.ErrTooLargeForFormat) {
				t.Errorf("Fits = %v, want fits %v", err, tc.fits)
			}
		})
	}
}

// TestFullChromaFrom: where the search may look below the encoder's own
// switch to full chroma: JPEG always (from the tuning's q95, or libvips'
// q90), AVIF only for outputs it can afford to search twice, WebP never.
func TestFullChromaFrom(t *testing.T) {
	bySize := New(Config{AVIFSpeed: AVIFSpeedBySize, JPEG: MozJPEG})
	for _, tc := range []struct {
		name   string
		p      *Processor
		f      variant.Format
		pixels int
		want   int
	}{
		{"mozjpeg tuning", bySize, variant.FormatJPEG, 20_000_000, 95},
		{"libvips' own JPEG switch", New(Config{AVIFSpeed: AVIFSpeedBySize}), variant.FormatJPEG, 300_000, 90},
		{"AVIF, 960×640", bySize, variant.FormatAVIF, 960 * 640, 90},
		{"AVIF, 1 MP", bySize, variant.FormatAVIF, 1_000_000, 90},
		{"AVIF, 1600×1000", bySize, variant.FormatAVIF, 1600 * 1000, 0},
		{"AVIF at a slower configured speed", New(Config{AVIFSpeed: 4}), variant.FormatAVIF, 960 * 640, 0},
		{"AVIF at a faster configured speed", New(Config{AVIFSpeed: 8}), variant.FormatAVIF, 960 * 640, 90},
		{"WebP", bySize, variant.FormatWebP, 960 * 640, 0},
	} {
		if got := tc.p.fullChromaFrom(tc.f, tc.pixels); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
