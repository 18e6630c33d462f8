package imaging

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// TestAnimationsStayAnimatedAsWebP: a WebP of an animated GIF or WebP is
// an animation of every frame, each fitted to the box on its own (cover
// crops each alike), with the original's delays and loop count; in any
// other format, the variant is the first frame.
func TestAnimationsStayAnimatedAsWebP(t *testing.T) {
	gif := testimages.AnimatedGIF(40, 30, 5) // 200 ms a frame, looping
	webp := fixture(t, "animated.webp")
	each := func(ms, frames int) []int { return slices.Repeat([]int{ms}, frames) } // delays
	for _, tc := range []struct {
		name   string
		data   []byte
		spec   variant.Spec
		w, h   int
		delays []int // nil: a still image
	}{
		{"GIF, fitted inside", gif, variant.Spec{Width: 20, Format: variant.FormatWebP}, 20, 15, each(200, 5)},
		{"GIF, covering a square", gif, variant.Spec{Width: 16, Height: 16, Fit: variant.FitCover, Format: variant.FormatWebP}, 16, 16, each(200, 5)},
		{"GIF, at its own size", gif, variant.Spec{Format: variant.FormatWebP}, 40, 30, each(200, 5)},
		{"WebP (3 frames of 48×32)", webp, variant.Spec{Width: 24, Format: variant.FormatWebP}, 24, 16, each(300, 3)},
		{"GIF as PNG: the first frame", gif, variant.Spec{Width: 20, Format: variant.FormatPNG}, 20, 15, nil},
		{"GIF as AVIF: the first frame", gif, variant.Spec{Width: 20, Format: variant.FormatAVIF}, 20, 15, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := run(t, tc.data, tc.spec)
			info, err := proc.Probe(out.Data)
			if err != nil || out.Width != tc.w || out.Height != tc.h || info.Width != tc.w || info.Height != tc.h {
				t.Fatalf("%d×%d (probed %+v, %v), want %d×%d", out.Width, out.Height, info, err, tc.w, tc.h)
			}
			if want := max(len(tc.delays), 1); info.Frames != want {
				t.Fatalf("%d frames, want %d", info.Frames, want)
			}
			if tc.delays == nil {
				return
			}
			w, h, delays, loops, err := webpAnimation(out.Data)
			if err != nil || w != tc.w || h != tc.h || !slices.Equal(delays, tc.delays) || loops != 0 {
				t.Errorf("animation %d×%d, delays %v, %d loops (%v); want %d×%d, %v, looping for ever", w, h, delays, loops, err, tc.w, tc.h, tc.delays)
			}
		})
	}
	// The first frame is the first frame's pixels, resized alone.
	anim, _ := run(t, gif, variant.Spec{Width: 20, Format: variant.FormatWebP, Quality: 95})
	first, firstImg := run(t, gif, variant.Spec{Width: 20, Format: variant.FormatPNG})
	info, err := proc.Probe(anim.Data)
	if err != nil {
		t.Fatal(err)
	}
	back, err := proc.Process(anim.Data, transform.Operation{Spec: resolved(variant.Spec{Format: variant.FormatPNG}), Source: info})
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := testimages.Decode(back.Data)
	if err != nil {
		t.Fatal(err)
	}
	if d := testimages.MeanAbsDiff(img, firstImg); d > 4 {
		t.Errorf("the animation's first frame differs from the first frame's variant (%d B) by %.1f on average", len(first.Data), d)
	}
}

// TestAnimationsPastThePageBound: libvips takes a strip of 10,000 pages or
// more for one image (vips_image_get_n_pages), so a GIF or WebP animation
// of that many frames passed for a still and its variant was the first
// frame alone. The probe counts every frame, and such an animation is not
// animated: the service keeps the original GIF. A WebP of that many frames
// is refused (checkWebPChunks: libwebp reads its frame list in quadratic
// time).
func TestAnimationsPastThePageBound(t *testing.T) {
	still, _ := run(t, testimages.PNG(1, 1), variant.Spec{Format: variant.FormatWebP})
	for _, frames := range []int{transform.MaxAnimationFrames, transform.MaxAnimationFrames + 1, 20_000} {
		for format, data := range map[string][]byte{
			"gif":  testimages.TinyFramesGIF(frames),
			"webp": repeatedWebP(t, still.Data, frames),
		} {
			info, err := proc.Probe(data)
			if format == "webp" && frames > maxWebPFrames {
				if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), fmt.Sprintf("lists %d frames", frames)) {
					t.Errorf("webp of %d frames: %v, want ErrUnsupportedImage naming its frames", frames, err)
				}
				continue
			}
			if err != nil || info.Format != format || info.Frames != frames {
				t.Fatalf("%s of %d frames: probed %+v, %v", format, frames, info, err)
			}
			if animates := info.AnimatesAs(variant.FormatWebP); animates != (frames <= transform.MaxAnimationFrames) {
				t.Errorf("%s of %d frames: animated as WebP: %v", format, frames, animates)
			}
		}
	}
}

// repeatedWebP is an animated WebP of the given number of frames, each the
// image of still (a 1×1 lossy WebP), 20 ms long.
func repeatedWebP(t *testing.T, still []byte, frames int) []byte {
	t.Helper()
	var vp8 []byte // the still's "VP8 " chunk, header and padding included
	for p := 12; p+8 <= len(still); {
		size := int(binary.LittleEndian.Uint32(still[p+4:]))
		if string(still[p:p+4]) == "VP8 " {
			vp8 = still[p : p+8+size+size%2]
		}
		p += 8 + size + size%2
	}
	if vp8 == nil {
		t.Fatal("the still WebP has no VP8 chunk")
	}
	chunk := func(fourcc string, body []byte) []byte {
		c := binary.LittleEndian.AppendUint32([]byte(fourcc), uint32(len(body)))
		return append(c, body...) // every body here is of even length
	}
	out := chunk("VP8X", []byte{0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // animated, 1×1 canvas
	out = append(out, chunk("ANIM", []byte{0, 0, 0, 0, 0, 0})...) // no background, looping
	frame := chunk("ANMF", append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0}, vp8...))
	for range frames {
		out = append(out, frame...)
	}
	return append(binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(4+len(out))), append([]byte("WEBP"), out...)...)
}

// webpAnimation reads an animated WebP's canvas size, its frames' delays
// in milliseconds and its loop count (0: for ever) from its VP8X, ANIM and
// ANMF chunks.
func webpAnimation(data []byte) (w, h int, delays []int, loops int, err error) {
	u24 := func(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		return 0, 0, nil, 0, errors.New("not a WebP")
	}
	for p := 12; p+8 <= len(data); {
		size := int(binary.LittleEndian.Uint32(data[p+4:]))
		body := data[p+8 : min(p+8+size, len(data))]
		switch string(data[p : p+4]) {
		case "VP8X":
			if len(body) >= 10 {
				w, h = u24(body[4:])+1, u24(body[7:])+1
			}
		case "ANIM":
			if len(body) >= 6 {
				loops = int(binary.LittleEndian.Uint16(body[4:]))
			}
		case "ANMF":
			if len(body) >= 15 {
				delays = append(delays, u24(body[12:]))
			}
		}
		p += 8 + size + size%2
	}
	if delays == nil {
		return w, h, nil, loops, errors.New("no ANMF frames")
	}
	return w, h, delays, loops, nil
}
