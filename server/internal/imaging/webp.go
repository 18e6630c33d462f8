package imaging

import (
	"encoding/binary"
	"fmt"

	"github.com/imgedge/imgedge/server/internal/transform"
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

// checkWebPChunks refuses a WebP that lists more frames or other chunks
// than libwebp should be asked to read.
func checkWebPChunks(data []byte) error {
	frames, others := webpChunks(data)
	if frames > maxWebPFrames {
		return fmt.Errorf("%w: the WebP animation lists %d frames, and the decoder reads a frame list in time that grows with the square of its length: this service reads up to %d",
			transform.ErrUnsupportedImage, frames, maxWebPFrames)
	}
	if others > maxWebPOtherChunks {
		return fmt.Errorf("%w: the WebP lists %d chunks besides its frames, and the decoder keeps each: this service reads up to %d (a WebP has a few)",
			transform.ErrUnsupportedImage, others, maxWebPOtherChunks)
	}
	return nil
}

// webpChunks counts the chunks a WebP's RIFF container lists, as libwebp's
// demuxer walks them: to the end of the RIFF payload or of the data,
// whichever comes first, each chunk padded to an even size. frames counts
// the ANMF chunks, others every other chunk. A chunk cut short by the end
// of the data counts, and ends the walk; data that is not a WebP counts
// nothing.
func webpChunks(data []byte) (frames, others int) {
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		return 0, 0
	}
	end := len(data)
	if riff := uint64(binary.LittleEndian.Uint32(data[4:])) + 8; riff < uint64(end) {
		end = int(riff)
	}
	for p := 12; p+8 <= end; {
		size := uint64(binary.LittleEndian.Uint32(data[p+4:]))
		if string(data[p:p+4]) == "ANMF" {
			frames++
		} else {
			others++
		}
		next := uint64(p) + 8 + size + size%2
		if next > uint64(end) {
			break
		}
		p = int(next)
	}
	return frames, others
}
