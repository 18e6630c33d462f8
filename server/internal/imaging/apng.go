package imaging

import (
	"bytes"
	"encoding/binary"
)

// apngFrames is the number of frames an animated PNG declares in its acTL
// chunk, which comes before the first IDAT; 0 for a still PNG or data that
// is not a PNG. It reads chunk headers only; a count past 2^20 (the field
// is 32 bits, and nothing is allocated by it) reads as 2^20.
func apngFrames(data []byte) int {
	frames := 0
	pngHeaderChunks(data, func(typ string, body []byte) bool {
		if typ == "acTL" && len(body) >= 8 {
			frames = int(min(binary.BigEndian.Uint32(body), 1<<20))
			return false
		}
		return true
	})
	return frames
}

// pngHeaderChunks calls fn with each chunk of a PNG before its image data
// (the first IDAT), while fn returns true. A chunk cut short by the end of
// the data ends the walk, as does data that is not a PNG.
func pngHeaderChunks(data []byte, fn func(typ string, body []byte) bool) {
	const signature = "\x89PNG\r\n\x1a\n"
	if !bytes.HasPrefix(data, []byte(signature)) {
		return
	}
	for rest := data[len(signature):]; len(rest) >= 12; {
		n := binary.BigEndian.Uint32(rest)
		typ := string(rest[4:8])
		if typ == "IDAT" || typ == "IEND" || uint64(n)+12 > uint64(len(rest)) || !fn(typ, rest[8:8+n]) {
			return
		}
		rest = rest[12+n:]
	}
}
