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
	const signature = "\x89PNG\r\n\x1a\n"
	if !bytes.HasPrefix(data, []byte(signature)) {
		return 0
	}
	for rest := data[len(signature):]; len(rest) >= 12; {
		n := binary.BigEndian.Uint32(rest)
		typ := string(rest[4:8])
		switch {
		case typ == "IDAT" || typ == "IEND":
			return 0
		case typ == "acTL" && n >= 8 && len(rest) >= 16:
			return int(min(binary.BigEndian.Uint32(rest[8:]), 1<<20))
		case uint64(n)+12 > uint64(len(rest)):
			return 0
		}
		rest = rest[12+n:]
	}
	return 0
}
