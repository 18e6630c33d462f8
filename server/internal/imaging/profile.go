package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/imgedge/imgedge/server/internal/iccprofile"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// maxProfileBytes is the largest embedded ICC profile taken: what a JPEG
// can carry (255 APP2 segments of 65,519 bytes), rounded up to 16 MiB.
// Printers' profiles, the largest in use, run to a few megabytes; a PNG's
// iCCP chunk is compressed, and libpng inflates one of over 40 MB from a
// few kilobytes of zeros.
const maxProfileBytes = 16 << 20

// maxProfileSteps bounds what a colour passes through in an embedded
// profile's float transforms (iccprofile.Profile.FloatSteps). lcms samples
// the transform it builds at 35,937 colours (33³), each through
// every step: an 11 KB PNG whose profile lists a matrix and a curve set
// 5,000 times each (20,000 steps) costs 14 s of CPU and 400 MB before the
// first pixel. Float tags as profiles write them take a few dozen (a curve
// set of a few segments a channel, a matrix, a lookup table, for each of at
// most eight tags); a profile at the limit (64 matrices and 64 curve sets
// that lcms cannot fold away) costs 0.15 s, 8- or 16-bit.
const maxProfileSteps = 256

// profileHeld is the memory an embedded profile costs while its image is
// processed, as a multiple of its size: the decoder's copy, libvips' and
// lcms' (a server's peak grew 5.0–5.5 times a PNG's 8 MB profile, from one
// 720 px JPEG of the same image without it).
const profileHeld = 6

// checkProfile refuses an embedded ICC profile that would cost more to
// build a transform from than any profile in use: larger than
// maxProfileBytes, or whose float transforms take more than
// maxProfileSteps steps or hold more than maxProfileBytes. Data that is no
// profile passes: lcms does not open it, and the image converts as sRGB.
func checkProfile(data []byte) error {
	if len(data) > maxProfileBytes {
		return fmt.Errorf("%w: the embedded ICC profile is %d bytes, and this service takes profiles of up to %d", transform.ErrTooLarge, len(data), maxProfileBytes)
	}
	p, err := iccprofile.Read(data)
	if errors.Is(err, iccprofile.ErrNotProfile) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: reading the embedded ICC profile: %w", transform.ErrUnsupportedImage, err)
	}
	if p.FloatSteps > maxProfileSteps {
		return fmt.Errorf("%w: the embedded ICC profile's float transforms (%s) take each colour through at least %d steps, and a colour transform samples thousands of colours through them: this service takes up to %d (profiles write a few dozen)",
			transform.ErrUnsupportedImage, strings.Join(p.FloatTags, ", "), p.FloatSteps, maxProfileSteps)
	}
	if p.FloatBytes > maxProfileBytes {
		return fmt.Errorf("%w: the embedded ICC profile's float transforms (%s) hold %d bytes of elements as the colour transform reads them, and this service takes up to %d",
			transform.ErrTooLarge, strings.Join(p.FloatTags, ", "), p.FloatBytes, maxProfileBytes)
	}
	return nil
}

// pngProfileSize is how many bytes a PNG's embedded profile (its iCCP
// chunk, compressed) inflates to, counting no further than limit+1: a
// profile past the limit is refused before libpng inflates it whole. 0 for
// a PNG without one, or data that is not a PNG. A broken stream counts as
// far as it inflates; libpng drops that profile.
func pngProfileSize(data []byte, limit int64) int64 {
	var size int64
	pngHeaderChunks(data, func(typ string, body []byte) bool {
		if typ != "iCCP" {
			return true
		}
		// A name of 1–79 bytes, its terminating NUL, the compression
		// method, then the zlib stream.
		name := bytes.IndexByte(body, 0)
		if name < 0 || name+2 > len(body) {
			return false
		}
		size = inflatedSize(body[name+2:], limit+1)
		return false
	})
	return size
}
