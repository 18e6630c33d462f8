package imaging

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/vp8l"
)

// maxWebPFrames is the most frames a WebP animation may list. libwebp
// finds a frame by walking its list from the first, once for each frame
// libvips reads (their delays, in the header, and again to load), so
// reading the header takes time that grows with the square of the frames:
// 0.2 s of CPU for 10,000 frames of 1 px, 22 s for 100,000, and a 46 MB
// WebP of 800,000 was still being read after a minute. No timeout reaches
// inside libwebp. An animation of more frames than the service animates
// (transform.MaxAnimationFrames) is refused.
const maxWebPFrames = transform.MaxAnimationFrames

// maxWebPOtherChunks is the most chunks other than frames a WebP may list.
// libwebp keeps an entry for each (4 million empty chunks, a 32 MB WebP,
// took a server's peak RSS up by 250 MB); a still has at most six (VP8X,
// ICCP, ALPH, its image, EXIF, XMP), an animation one more (ANIM).
const maxWebPOtherChunks = 1000

// readWebP refuses a WebP that lists more frames or other chunks than
// libwebp should be asked to read, and reports the memory libwebp's
// lossless decoder allocates for the prefix codes of the largest lossless
// stream it carries (an image, a frame or an alpha plane): a stream may
// name up to 65,536 groups of codes, each with tables of 12–20 KB, whatever
// its image's size.
func readWebP(data []byte) (held int64, err error) {
	c := webpChunks(data)
	if c.frames > maxWebPFrames {
		return 0, fmt.Errorf("%w: the WebP animation lists %d frames, and the decoder reads a frame list in time that grows with the square of its length: this service reads up to %d",
			transform.ErrUnsupportedImage, c.frames, maxWebPFrames)
	}
	if c.others > maxWebPOtherChunks {
		return 0, fmt.Errorf("%w: the WebP lists %d chunks besides its frames, and the decoder keeps each: this service reads up to %d (a WebP has a few)",
			transform.ErrUnsupportedImage, c.others, maxWebPOtherChunks)
	}
	return c.tables, nil
}

// maxLosslessPixels is the most pixels whose prefix codes readWebP reads
// in one WebP, in all its lossless streams (vp8l: reading them costs in
// proportion to their pixels, which a few bytes may declare). It is twice
// the default pixel limit: an animation past it has more pixels in all
// its frames than the service decodes whole by default, and only its
// first frames are read; a stream past it alone counts at the worst
// (vp8l.Worst).
const maxLosslessPixels = 100_000_000

// webpContents is what a WebP's RIFF container lists.
type webpContents struct {
	frames int // ANMF chunks
	others int // every other chunk
	// tables is the most memory the prefix codes of one of its lossless
	// streams (VP8L chunks, ALPH chunks compressed losslessly) take in
	// libwebp, which decodes one at a time.
	tables int64
}

// webpChunks walks a WebP's RIFF container as libwebp's demuxer does: to
// the end of the RIFF payload or of the data, whichever comes first, each
// chunk padded to an even size, and into each frame. A chunk cut short by
// the end of the data counts, and ends the walk; data that is not a WebP
// lists nothing. A lossless stream libwebp would refuse before its codes
// costs nothing; streams are read up to maxLosslessPixels.
func webpChunks(data []byte) webpContents {
	var c webpContents
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		return c
	}
	end := len(data)
	if riff := uint64(binary.LittleEndian.Uint32(data[4:])) + 8; riff < uint64(end) {
		end = max(int(riff), 12)
	}
	var width, height int // the canvas, which a still's alpha plane covers
	budget := int64(maxLosslessPixels)
	lossless := func(fourcc string, body []byte, w, h int) {
		if budget <= 0 {
			return
		}
		var codes vp8l.Codes
		var err error
		switch {
		case fourcc == "VP8L":
			codes, err = vp8l.Read(body, budget)
		case fourcc == "ALPH" && len(body) > 0 && body[0]&3 == 1:
			codes, err = vp8l.ReadAlpha(body[1:], w, h, budget)
		default:
			return
		}
		switch {
		case errors.Is(err, vp8l.ErrTooLarge):
			if budget == maxLosslessPixels { // the first stream, too large alone
				c.tables = vp8l.Worst.TableBytes()
			}
			budget = 0
		case err == nil:
			c.tables = max(c.tables, codes.TableBytes())
		}
		// A stream that fails has cost its pixels' reading all the same.
		budget -= codes.Pixels
	}
	walkRIFF(data[12:end], func(fourcc string, body []byte) {
		switch fourcc {
		case "ANMF":
			c.frames++
			if len(body) < 16 {
				return
			}
			// The frame's offset, its size less one (24 bits each), its
			// duration and flags, then its own chunks.
			w, h := int(uint24(body[6:]))+1, int(uint24(body[9:]))+1
			walkRIFF(body[16:], func(fourcc string, body []byte) { lossless(fourcc, body, w, h) })
			return
		case "VP8X":
			if len(body) >= 10 {
				width, height = int(uint24(body[4:]))+1, int(uint24(body[7:]))+1
			}
		}
		c.others++
		lossless(fourcc, body, width, height)
	})
	return c
}

// walkRIFF calls fn with each chunk of data, padded to even sizes; a chunk
// cut short by the end of the data is passed as far as it goes, and ends
// the walk.
func walkRIFF(data []byte, fn func(fourcc string, body []byte)) {
	for p := 0; p+8 <= len(data); {
		size := uint64(binary.LittleEndian.Uint32(data[p+4:]))
		next := uint64(p) + 8 + size + size%2
		fn(string(data[p:p+4]), data[p+8:min(uint64(p)+8+size, uint64(len(data)))])
		if next > uint64(len(data)) {
			return
		}
		p = int(next)
	}
}

func uint24(b []byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 }
