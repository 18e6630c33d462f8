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

func jpegOf(t *testing.T, img image.Image, q int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEstimateJPEGQuality(t *testing.T) {
	img := photo(64, 64)
	for _, q := range []int{20, 50, 75, 85, 90, 95} {
		data := jpegOf(t, img, q)
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
