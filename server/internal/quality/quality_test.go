package quality

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"testing"
)

func photo(w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 1))
	for y := range h {
		for x := range w {
			v := 128 + 60*math.Sin(float64(x)/9)*math.Cos(float64(y)/13) + float64(rng.IntN(21)-10)
			img.SetGray(x, y, color.Gray{uint8(max(0, min(255, v)))})
		}
	}
	return img
}

func plane(img image.Image) Plane {
	b := img.Bounds()
	p := Plane{Width: b.Dx(), Height: b.Dy(), Pix: make([]uint8, b.Dx()*b.Dy())}
	for y := range b.Dy() {
		for x := range b.Dx() {
			g := color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray)
			p.Pix[y*p.Width+x] = g.Y
		}
	}
	return p
}

func jpegRoundTrip(t *testing.T, img image.Image, q int) (Plane, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	back, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return plane(back), buf.Bytes()
}

func uniform(w, h int, v uint8) Plane {
	return Plane{Width: w, Height: h, Pix: bytes.Repeat([]byte{v}, w*h)}
}

func TestSSIMReferenceValues(t *testing.T) {
	src := plane(photo(96, 80))
	for name, f := range map[string]func(a, b Plane) (float64, error){"SSIM": SSIM, "MS-SSIM": MSSSIM} {
		if s, err := f(src, src); err != nil || math.Abs(s-1) > 1e-12 {
			t.Errorf("%s(x, x) = %v, %v; want 1", name, s, err)
		}
	}
	// Flat images: only the luminance term remains, with a closed form.
	got, err := SSIM(uniform(32, 32, 100), uniform(32, 32, 110))
	want := (2*100*110 + c1) / (100*100 + 110*110 + c1)
	if err != nil || math.Abs(got-want) > 1e-9 {
		t.Errorf("SSIM(100, 110) = %v, want %v", got, want)
	}
	// A contrast inversion around the mean is as dissimilar as it gets in structure.
	inv := Plane{Width: src.Width, Height: src.Height, Pix: make([]uint8, len(src.Pix))}
	for i, v := range src.Pix {
		inv.Pix[i] = 255 - v
	}
	if s, _ := SSIM(src, inv); s > 0 {
		t.Errorf("SSIM of an inverted image = %v, want ≤ 0", s)
	}
	if _, err := SSIM(src, uniform(10, 10, 0)); err == nil {
		t.Error("planes of different sizes compared without error")
	}
}

func TestSSIMOrdersDegradations(t *testing.T) {
	img := photo(160, 120)
	ref := plane(img)
	for name, f := range map[string]func(a, b Plane) (float64, error){"SSIM": SSIM, "MS-SSIM": MSSSIM} {
		prev := 1.0
		for _, q := range []int{95, 75, 40, 10} {
			dec, _ := jpegRoundTrip(t, img, q)
			s, err := f(ref, dec)
			if err != nil {
				t.Fatal(err)
			}
			if s >= prev {
				t.Errorf("%s: q%d scores %.4f, not below the milder distortion's %.4f", name, q, s, prev)
			}
			prev = s
		}
		if limit := map[string]float64{"SSIM": 0.9, "MS-SSIM": 0.97}[name]; prev > limit {
			t.Errorf("%s: q10 still scores %.4f (want < %v)", name, prev, limit)
		}
	}
}

func TestEstimateJPEGQuality(t *testing.T) {
	img := photo(64, 64)
	for _, q := range []int{20, 50, 75, 85, 90, 95} {
		_, data := jpegRoundTrip(t, img, q)
		got, ok := EstimateJPEGQuality(data)
		if !ok || got < q-1 || got > q+1 {
			t.Errorf("quality %d estimated as %d (%v)", q, got, ok)
		}
	}
	for _, bad := range [][]byte{nil, []byte("GIF89a"), {0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x45, 0x00}} {
		if _, ok := EstimateJPEGQuality(bad); ok {
			t.Errorf("estimated a quality for %q", bad)
		}
	}
}

func FuzzEstimateJPEGQuality(f *testing.F) {
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00})
	var buf bytes.Buffer
	jpeg.Encode(&buf, photo(16, 16), &jpeg.Options{Quality: 80})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		if q, ok := EstimateJPEGQuality(data); ok && (q < 1 || q > 100) {
			t.Fatalf("quality %d out of range", q)
		}
	})
}
