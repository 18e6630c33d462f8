package imaging

import (
	"bytes"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

// TestGIFFrames: the walk counts frames, and tells a GIF cut anywhere
// inside a block from a whole one (with or without its trailer).
func TestGIFFrames(t *testing.T) {
	anim := testimages.AnimatedGIF(40, 30, 5)
	still := shapeImage("gif", 33, 17)
	for _, tc := range []struct {
		name     string
		data     []byte
		frames   int
		complete bool
	}{
		{"5 frames", anim, 5, true},
		{"a still", still, 1, true},
		{"no trailer", anim[:len(anim)-1], 5, true},
		{"cut in the last frame", anim[:len(anim)-3], 4, false},
		{"cut in half", anim[:len(anim)/2], 2, false},
		{"cut in the screen's colour table", anim[:20], 0, false},
		{"junk after a frame", append(bytes.Clone(still[:len(still)-1]), 0x00, 0x3B), 1, true},
		{"a PNG", testimages.PNG(8, 8), 0, false},
		{"another version", append([]byte("GIF88a"), anim[6:]...), 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if frames, complete := gifFrames(tc.data); frames != tc.frames || complete != tc.complete {
				t.Errorf("gifFrames = %d, %v; want %d, %v", frames, complete, tc.frames, tc.complete)
			}
		})
	}
}

func FuzzGIFFrames(f *testing.F) {
	f.Add(testimages.AnimatedGIF(8, 6, 3))
	f.Add(shapeImage("gif", 5, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		if frames, _ := gifFrames(data); frames < 0 || frames > len(data)/10 {
			t.Fatalf("%d frames in %d bytes", frames, len(data))
		}
	})
}
