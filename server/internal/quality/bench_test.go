package quality

import (
	"image"
	"testing"
)

// BenchmarkSSIMULACRA2Score scores a 720×540 candidate against a prepared
// reference: the cost of one auto-quality step's score.
func BenchmarkSSIMULACRA2Score(b *testing.B) {
	ref := image.NewNRGBA(image.Rect(0, 0, 720, 540))
	for i := range ref.Pix {
		ref.Pix[i] = uint8(i*31 + i/2880)
		if i%4 == 3 {
			ref.Pix[i] = 255 // opaque, as the scored tiles are
		}
	}
	dist := image.NewNRGBA(ref.Rect)
	copy(dist.Pix, ref.Pix)
	for i := 0; i < len(dist.Pix); i += 7 {
		if i%4 != 3 {
			dist.Pix[i] ^= 8
		}
	}
	r, err := NewSSIMULACRA2Reference(ref)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Score(dist); err != nil {
			b.Fatal(err)
		}
	}
}
