package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/color"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// riff is a WebP container of the given chunks, each a fourcc and a body
// (padded to an even size).
func riff(chunks ...[]byte) []byte {
	out := []byte("WEBP")
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(out))), out...)
}

func webpChunk(fourcc string, body []byte) []byte {
	c := append(binary.LittleEndian.AppendUint32([]byte(fourcc), uint32(len(body))), body...)
	if len(body)%2 == 1 {
		c = append(c, 0)
	}
	return c
}

// TestWebPChunks: chunks are counted as libwebp walks them, padded, up to
// the end of the RIFF payload.
func TestWebPChunks(t *testing.T) {
	vp8x := webpChunk("VP8X", make([]byte, 10))
	frame := webpChunk("ANMF", make([]byte, 17))
	withTail := append(riff(vp8x, frame), webpChunk("ABCD", nil)...) // past the RIFF payload
	cut := riff(vp8x, frame, frame)
	for _, tt := range []struct {
		name           string
		data           []byte
		frames, others int
	}{
		{"not a WebP", testimages.PNG(4, 4), 0, 0},
		{"a still", riff(vp8x, webpChunk("VP8L", make([]byte, 5))), 0, 2},
		{"an animation, odd-sized frames padded", riff(vp8x, webpChunk("ANIM", make([]byte, 6)), frame, frame, frame), 3, 2},
		{"chunks past the RIFF payload", withTail, 1, 1},
		{"the last frame cut short", cut[:len(cut)-4], 2, 1},
		{"a RIFF size short of its own header", []byte("RIFF\x01\x00\x00\x00WEBP"), 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if c := webpChunks(tt.data); c.frames != tt.frames || c.others != tt.others {
				t.Errorf("%d frames, %d others; want %d, %d", c.frames, c.others, tt.frames, tt.others)
			}
		})
	}
}

// TestWebPChunkLimit: a WebP listing more chunks besides its frames than
// any encoder writes is refused from its header, before libwebp keeps an
// entry for each; a still with a few unknown chunks is served.
func TestWebPChunkLimit(t *testing.T) {
	still, _ := run(t, testimages.JPEG(64, 64, 90), variant.Spec{Format: variant.FormatWebP, Quality: 90})
	body := still.Data[12:] // the still's one chunk, its lossy image
	vp8x := webpChunk("VP8X", []byte{0, 0, 0, 0, 63, 0, 0, 63, 0, 0})
	unknown := func(n int) []byte {
		chunks := [][]byte{vp8x}
		for range n {
			chunks = append(chunks, webpChunk("ABCD", nil))
		}
		return riff(append(chunks, body)...)
	}
	info, err := proc.Probe(unknown(maxWebPOtherChunks - 2))
	if err != nil || info.Width != 64 {
		t.Fatalf("a still with %d unknown chunks: %+v, %v", maxWebPOtherChunks-2, info, err)
	}
	if _, err := proc.Probe(unknown(maxWebPOtherChunks)); !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "chunks besides its frames") {
		t.Errorf("a still with %d unknown chunks: %v, want ErrUnsupportedImage naming its chunks", maxWebPOtherChunks, err)
	}
}

// TestWebPPrefixCodes: a lossless WebP's groups of prefix codes, for
// which libwebp allocates tables before it decodes a pixel, count in the
// memory the image is admitted with (a 295 KB WebP of 1024×1024 naming
// 65,536 groups took a server's peak RSS up by 368 MB); an image of a few
// groups is served.
func TestWebPPrefixCodes(t *testing.T) {
	const tables = 2954*4 + 568 // one group's, no colour cache
	for _, tt := range []struct {
		name   string
		data   []byte
		groups int64
	}{
		{"one group", testimages.LosslessWebP(256, 256, 1, 0, false), 1},
		{"1,000 groups", testimages.LosslessWebP(256, 256, 1000, 0, false), 1000},
		{"65,536 groups", testimages.LosslessWebP(1024, 1024, 65536, 0, false), 65536},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := proc.Probe(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if held := tt.groups * tables; info.DecodeBuffer != held {
				t.Errorf("decode buffer %d bytes, want the groups' tables, %d", info.DecodeBuffer, held)
			}
			if tt.groups > 1000 {
				return
			}
			out, img := run(t, tt.data, variant.Spec{Width: 64, Format: variant.FormatPNG})
			if out.Width != 64 || !testimages.Near(img.At(10, 10), color.RGBA{0, 0, 0, 255}, 0) {
				t.Errorf("%d px wide, %v: want 64, black", out.Width, img.At(10, 10))
			}
		})
	}
}

// TestLosslessBudget: a WebP's lossless streams are read, in order, up to
// maxLosslessPixels declared in all, whether or not each turns out whole
// (reading costs in proportion to the pixels declared, which a few bytes
// may declare); the streams past it are not read. A first stream past it
// alone counts at the worst.
func TestLosslessBudget(t *testing.T) {
	stream := testimages.LosslessWebP(1024, 1024, 1, 0, false)[20:] // a VP8L chunk's payload
	groups := testimages.LosslessWebP(1024, 1024, 65536, 0, false)[20:]
	declaring := func(w, h int) []byte { // stream, claiming w×h: cut short at once
		d := bytes.Clone(stream)
		binary.LittleEndian.PutUint32(d[1:], uint32(w-1)|uint32(h-1)<<14)
		return d
	}
	frame := func(vp8l []byte) []byte {
		return webpChunk("ANMF", append(make([]byte, 16), webpChunk("VP8L", vp8l)...))
	}
	vp8x := webpChunk("VP8X", []byte{0x02, 0, 0, 0, 0xff, 0x3f, 0, 0xff, 0x3f, 0})
	codes := int64(65536) * (2954*4 + 568)
	for _, tt := range []struct {
		name   string
		data   []byte
		tables int64
	}{
		{"a still naming 65,536 groups", riff(webpChunk("VP8L", groups)), codes},
		{"a first frame naming them", riff(vp8x, frame(groups), frame(stream)), codes},
		{"after 60 and 50 MP declared", riff(vp8x, frame(declaring(10000, 6000)), frame(declaring(10000, 5000)), frame(groups)), 0},
		{"after 90 MP declared", riff(vp8x, frame(declaring(10000, 9000)), frame(groups)), codes},
		{"a first stream of 16384×16384", riff(webpChunk("VP8L", declaring(16384, 16384))), 65536 * (5004*4 + 568)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := webpChunks(tt.data).tables; got != tt.tables {
				t.Errorf("tables %d bytes, want %d", got, tt.tables)
			}
		})
	}
}

// TestGIFFrameLimit: a GIF listing more frames than maxGIFFrames is
// refused from its own walk, before libnsgif keeps an entry for each.
func TestGIFFrameLimit(t *testing.T) {
	_, err := proc.Probe(testimages.TinyFramesGIF(maxGIFFrames + 1))
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "lists 100001 frames") {
		t.Errorf("a GIF of %d frames: %v, want ErrUnsupportedImage naming its frames", maxGIFFrames+1, err)
	}
}

// FuzzWebPChunks: whatever the data, the walk ends, and counts no more
// chunks than 8-byte headers fit in it.
func FuzzWebPChunks(f *testing.F) {
	f.Add(riff(webpChunk("VP8X", make([]byte, 10)), webpChunk("ANMF", make([]byte, 17))))
	f.Add([]byte("RIFF\xff\xff\xff\xffWEBPVP8 \x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c := webpChunks(data); c.frames < 0 || c.others < 0 || c.frames+c.others > max(0, len(data)-12)/8+1 || c.tables < 0 {
			t.Fatalf("%+v in %d bytes", c, len(data))
		}
	})
}
