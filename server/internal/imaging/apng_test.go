package imaging

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

// pngChunk is a PNG chunk: length, type, data, CRC.
func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(append(c, typ...), data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// insertAt puts b into data at offset at.
func insertAt(data []byte, at int, b []byte) []byte {
	return append(append(append([]byte{}, data[:at]...), b...), data[at:]...)
}

// withChunk inserts a PNG chunk right after IHDR.
func withChunk(png []byte, typ string, data []byte) []byte {
	const afterIHDR = 8 + 8 + 13 + 4 // signature, IHDR's length and type, its data, its CRC
	return insertAt(png, afterIHDR, pngChunk(typ, data))
}

// acTL is an animation control chunk's data: frames, plays (0: forever).
func acTL(frames uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, frames), 0)
}

func TestAPNGFrames(t *testing.T) {
	png := testimages.PNG(16, 8)
	idat := bytes.Index(png, []byte("IDAT")) - 4
	tests := map[string]struct {
		data []byte
		want int
	}{
		"still png":               {png, 0},
		"apng of 12 frames":       {withChunk(png, "acTL", acTL(12)), 12},
		"acTL after IDAT ignored": {insertAt(png, idat+12+int(binary.BigEndian.Uint32(png[idat:])), pngChunk("acTL", acTL(3))), 0},
		"short acTL":              {withChunk(png, "acTL", []byte{0, 0, 0, 9}), 0},
		"chunk past the end":      {png[:40], 0},
		"not a png":               {testimages.JPEG(8, 8, 80), 0},
		"absurd frame count":      {withChunk(png, "acTL", acTL(1<<31)), 1 << 20},
	}
	for name, tc := range tests {
		if got := apngFrames(tc.data); got != tc.want {
			t.Errorf("%s: %d frames, want %d", name, got, tc.want)
		}
	}
}

func FuzzAPNGFrames(f *testing.F) {
	png := testimages.PNG(16, 8)
	f.Add(png)
	f.Add(withChunk(png, "acTL", acTL(5)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if n := apngFrames(data); n < 0 || n > 1<<20 {
			t.Fatalf("%d frames", n)
		}
	})
}

// TestAnimationFrames: the header says how many frames an animation has,
// and a variant of it is its first frame.
func TestAnimationFrames(t *testing.T) {
	anim := testimages.AnimatedGIF(40, 30, 5)
	// Three frames of 48×32, made by libvips 8.14 from a GIF.
	webp := fixture(t, "animated.webp")
	for name, tc := range map[string]struct {
		data []byte
		want int
	}{
		"gif of 5 frames":  {anim, 5},
		"webp of 3 frames": {webp, 3},
		"still gif":        {testimages.AnimatedGIF(40, 30, 1), 1},
		"apng of 7":        {withChunk(testimages.PNG(40, 30), "acTL", acTL(7)), 7},
		"jpeg":             {testimages.JPEG(40, 30, 80), 1},
	} {
		info, err := proc.Probe(tc.data)
		if err != nil || info.Frames != tc.want || info.Animated() != (tc.want > 1) {
			t.Errorf("%s: Probe = %+v, %v; want %d frames", name, info, err, tc.want)
		}
	}
	if out, _ := run(t, anim, variant.Spec{Width: 20, Format: variant.FormatPNG}); out.Width != 20 || out.Height != 15 {
		t.Errorf("a variant of the animation is %d×%d, want its first frame at 20×15", out.Width, out.Height)
	}
}
