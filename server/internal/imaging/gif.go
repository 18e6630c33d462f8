package imaging

import "bytes"

// maxGIFFrames is the most frames a GIF may list. libnsgif keeps an entry
// for each frame it finds in the header read, before any limit is judged:
// a 45 MB GIF of three million frames of 1 px took a server's peak RSS up
// by 220 MB. A GIF of more frames than the service animates
// (transform.MaxAnimationFrames) is kept as it is; at 10 frames a second,
// this many would play for close to three hours.
const maxGIFFrames = 100_000

// gifFrames walks a GIF's blocks without decoding any pixels: it counts
// the image descriptors (frames) and reports whether the data holds each
// block whole. libvips refuses a still GIF cut short, but of an animation
// it decodes the frames it can find and draws a last one cut short over
// the frame before, without a warning: the walk tells that damage apart.
// The data may end after a whole block without its trailer, or go on with
// bytes that start no block (decoders stop there, as browsers do, with
// every frame before whole). complete is false for data that is not a GIF.
func gifFrames(data []byte) (frames int, complete bool) {
	if len(data) < 13 || !bytes.HasPrefix(data, []byte("GIF")) { // any version, as libnsgif reads it
		return 0, false
	}
	p := 13 + colourTableBytes(data[10])
	// subBlocks skips data sub-blocks from p up to their terminator.
	subBlocks := func() bool {
		for p < len(data) {
			n := int(data[p])
			p += 1 + n
			if n == 0 {
				return p <= len(data)
			}
		}
		return false
	}
	for {
		switch {
		case p == len(data):
			return frames, true // no trailer, nothing cut
		case p > len(data):
			return frames, false
		}
		switch data[p] {
		case 0x3B: // trailer
			return frames, true
		case 0x21: // extension: a label, then sub-blocks
			p += 2
			if !subBlocks() {
				return frames, false
			}
		case 0x2C: // image descriptor, local colour table, LZW code size, data
			if p+10 > len(data) {
				return frames, false
			}
			p += 10 + colourTableBytes(data[p+9]) + 1
			if !subBlocks() {
				return frames, false
			}
			frames++
		default: // not a block: decoders stop here, every frame before it whole
			return frames, true
		}
	}
}

// colourTableBytes is the size of the colour table a GIF's packed field
// (of its screen or of an image) declares: 0 when its top bit is clear.
func colourTableBytes(packed byte) int {
	if packed&0x80 == 0 {
		return 0
	}
	return 3 << (packed&7 + 1)
}
