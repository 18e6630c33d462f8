package imaging

import (
	"bytes"
	"compress/zlib"
	"io"
)

// maxTextBytes is the most text a PNG's text chunks (tEXt, zTXt, iTXt:
// comments, XMP) may hold in all, inflated, before its image data. libpng
// inflates each compressed chunk whole while libvips reads the header, and
// it and libvips keep copies of it: ten zTXt chunks of 40 MB of one letter
// each, a 409 KB PNG, took a server's peak RSS to 1.7 GB in 3.2 s, and a 4
// MB PNG of a hundred took it to 12 GB. Photoshop's XMP, the largest text
// in use, runs to a few megabytes.
const maxTextBytes = 16 << 20

// textHeld is the memory a PNG's text costs while its header is read, as
// a multiple of its inflated size: libpng's inflated copy, the copy it
// keeps, libvips' (a server's peak grew 4.3–5.1 times the text, for one to
// four chunks of 8 or 40 MB).
const textHeld = 6

// pngCachedChunks is how many ancillary chunks libpng keeps while libvips
// reads a PNG (png_set_chunk_cache_max): it skips the text chunks past
// them without inflating them.
const pngCachedChunks = 100

// pngTextSize is how many bytes a PNG's text chunks before its image data
// hold in all, inflated, counting no further than limit+1: text past the
// limit is refused before libpng inflates it. 0 for a PNG without text, or
// data that is not a PNG. A broken stream counts as far as it inflates.
// Only the first pngCachedChunks text chunks count, as libpng keeps no
// more (a million empty zTXt chunks took 2.7 s to inflate here); nor does
// text after the image data: libvips reads the header and the image, and
// libpng reads no further.
func pngTextSize(data []byte, limit int64) int64 {
	var size int64
	chunks := 0
	pngHeaderChunks(data, func(typ string, body []byte) bool {
		left := limit + 1 - size
		if typ == "tEXt" || typ == "zTXt" || typ == "iTXt" {
			chunks++
		}
		switch typ {
		case "tEXt":
			// A keyword and its NUL, then the text.
			if k := bytes.IndexByte(body, 0); k >= 0 {
				size += min(int64(len(body)-k-1), left)
			}
		case "zTXt":
			// A keyword of 1–79 bytes, its terminating NUL, the
			// compression method, then the zlib stream.
			if k := bytes.IndexByte(body, 0); k >= 0 && k+2 <= len(body) {
				size += inflatedSize(body[k+2:], left)
			}
		case "iTXt":
			// A keyword and its NUL, the compression flag and method,
			// a language tag and a translated keyword, each ending in a
			// NUL, then the text, compressed when the flag is 1.
			k := bytes.IndexByte(body, 0)
			if k < 0 || k+3 > len(body) {
				break
			}
			compressed, rest := body[k+1] == 1, body[k+3:]
			for range 2 {
				if n := bytes.IndexByte(rest, 0); n >= 0 {
					rest = rest[n+1:]
				} else {
					rest = nil
				}
			}
			if compressed {
				size += inflatedSize(rest, left)
			} else {
				size += min(int64(len(rest)), left)
			}
		}
		return size <= limit && chunks < pngCachedChunks
	})
	return size
}

// inflatedSize is how many bytes a zlib stream inflates to, counting no
// further than limit: as far as it inflates when it is broken, 0 when it
// does not start as one.
func inflatedSize(stream []byte, limit int64) int64 {
	z, err := zlib.NewReader(bytes.NewReader(stream))
	if err != nil {
		return 0
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(z, limit))
	return n
}
