package imaging

import (
	"bytes"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// TestPNGTextCost: a PNG whose text chunks would inflate past 16 MiB in
// all is refused from the header, before libpng inflates them; text within
// the limit, stored or compressed, is counted in the image's memory
// estimate, and the image converts. Text chunks past the 100 libpng keeps
// are not counted.
func TestPNGTextCost(t *testing.T) {
	png := testimages.PNG(320, 240)
	letters := func(n int) []byte { return bytes.Repeat([]byte("A"), n) }
	many := png // 200 zTXt of 100 KiB: libpng keeps the first 100
	for range 200 {
		many = testimages.WithText(many, "zTXt", true, letters(100<<10))
	}
	tests := []struct {
		name string
		data []byte
		text int64 // inflated text, when it is taken
		want error
	}{
		{"no text", png, 0, nil},
		{"a tEXt comment", testimages.WithText(png, "tEXt", false, []byte("made by hand")), 12, nil},
		{"a stored iTXt", testimages.WithText(png, "iTXt", false, letters(1000)), 1000, nil},
		{"a zTXt of 8 MiB", testimages.WithText(png, "zTXt", true, letters(8<<20)), 8 << 20, nil},
		{"a zTXt of 16 MiB", testimages.WithText(png, "zTXt", true, letters(16<<20)), 16 << 20, nil},
		{"a zTXt of 16 MiB and a byte", testimages.WithText(png, "zTXt", true, letters(16<<20+1)), 0, transform.ErrTooLarge},
		{"a compressed iTXt of 40 MB", testimages.WithText(png, "iTXt", true, letters(40<<20)), 0, transform.ErrTooLarge},
		{"two zTXt of 9 MiB", testimages.WithText(testimages.WithText(png, "zTXt", true, letters(9<<20)), "zTXt", true, letters(9<<20)), 0, transform.ErrTooLarge},
		{"200 zTXt of 100 KiB", many, pngCachedChunks * 100 << 10, nil},
		{"a zTXt of 9 MiB and a compressed iTXt of 9 MiB", testimages.WithText(testimages.WithText(png, "zTXt", true, letters(9<<20)), "iTXt", true, letters(9<<20)), 0, transform.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil && pngTextSize(tt.data, maxTextBytes) != tt.text {
				t.Fatalf("pngTextSize: %d, want %d", pngTextSize(tt.data, maxTextBytes), tt.text)
			}
			probeTakes(t, tt.data, tt.want, "text chunks", textHeld*tt.text)
		})
	}
}

// FuzzPNGTextSize: whatever the chunks, the count is never negative and
// stops at the limit and a byte.
func FuzzPNGTextSize(f *testing.F) {
	png := testimages.PNG(8, 8)
	f.Add(png)
	f.Add(testimages.WithText(png, "tEXt", false, []byte("comment")))
	f.Add(testimages.WithText(png, "zTXt", true, bytes.Repeat([]byte("A"), 5000)))
	f.Add(testimages.WithText(png, "iTXt", true, bytes.Repeat([]byte("A"), 5000)))
	f.Add(testimages.WithText(png, "iTXt", false, []byte("text")))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		if n := pngTextSize(data, limit); n < 0 || n > limit+1 {
			t.Fatalf("pngTextSize: %d, want 0–%d", n, limit+1)
		}
	})
}
