package imaging

import (
	"encoding/binary"
	"slices"
)

// heifFormat names the format of an ISOBMFF image file by the brands its
// ftyp box lists: "avif" when any brand is AVIF's (avif for a still image,
// avis for an image sequence: an animated AVIF), "heif" for HEIF's other
// brands (heic, heix, mif1, msf1, ...). ok is false for anything else.
// Every brand counts, not only the major one: an animated AVIF's major brand
// is avis, and some encoders name mif1 first and avif among the others. It
// reads at most maxBrands compatible brands (files list a handful; the box
// may claim a whole file).
func heifFormat(data []byte) (name string, ok bool) {
	if len(data) < 16 || string(data[4:8]) != "ftyp" {
		return "", false
	}
	size := uint64(binary.BigEndian.Uint32(data))
	if size < 16 || size > uint64(len(data)) {
		return "", false
	}
	major, compatible := data[8:12], data[16:min(size, 16+4*maxBrands)]
	if string(major) == "mif3" {
		// HEIF's low-overhead form (a "mini" box for meta): the minor
		// version holds the image format's brand.
		major = data[12:16]
	}
	switch {
	case listsBrand(major, compatible, avifBrands):
		return "avif", true
	case listsBrand(major, compatible, heifBrands):
		return "heif", true
	}
	return "", false
}

// The brands that make a file AVIF, and HEIF's others.
var (
	avifBrands = []string{"avif", "avis"}
	heifBrands = []string{"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "mif2", "msf1"}
)

// maxBrands bounds the compatible brands heifFormat reads.
const maxBrands = 64

// listsBrand says whether the major brand or a compatible one (4 bytes
// each) is one of names.
func listsBrand(major, compatible []byte, names []string) bool {
	if slices.Contains(names, string(major)) {
		return true
	}
	for b := compatible; len(b) >= 4; b = b[4:] {
		if slices.Contains(names, string(b[:4])) {
			return true
		}
	}
	return false
}

// maxSequenceFrames bounds the frame count sequenceFrames reports.
const maxSequenceFrames = 1 << 20

// sequenceFrames is the number of frames in an HEIF or AVIF image sequence
// (an animated AVIF): the most samples a picture track in its moov box
// holds, as its stsz (or stz2) box counts them; 0 for a file without one.
// Other tracks (an audio track, say) are not frames. libheif, and so
// libvips, reads only such a file's still image, its first frame. It reads
// box headers only and never fails: a damaged header is the decoder's to
// report.
func sequenceFrames(data []byte) int {
	moov, found := child(data, "moov", false)
	if !found {
		return 0
	}
	frames := 0
	walk(moov, func(typ string, trak []byte) bool {
		if typ != "trak" {
			return true
		}
		frames = max(frames, pictureSamples(trak))
		return frames < maxSequenceFrames
	})
	return min(frames, maxSequenceFrames)
}

// pictureSamples reads a trak box's sample count from
// mdia/minf/stbl/stsz (or stz2), where its handler (mdia/hdlr) says it
// holds pictures ("pict", or "vide" as some writers have it); 0 otherwise.
// stsz and stz2 both hold the count after their version and flags and one
// more 32-bit field.
func pictureSamples(trak []byte) int {
	mdia, found := child(trak, "mdia", false)
	if !found {
		return 0
	}
	hdlr, found := child(mdia, "hdlr", true)
	if !found || len(hdlr) < 8 || (string(hdlr[4:8]) != "pict" && string(hdlr[4:8]) != "vide") {
		return 0
	}
	box := mdia
	for _, typ := range []string{"minf", "stbl"} {
		if box, found = child(box, typ, false); !found {
			return 0
		}
	}
	for _, typ := range []string{"stsz", "stz2"} {
		if sizes, found := child(box, typ, true); found && len(sizes) >= 8 {
			return int(min(binary.BigEndian.Uint32(sizes[4:]), maxSequenceFrames))
		}
	}
	return 0
}

// longestItemExtent is the image spatial extent (an ispe property, in
// meta/iprp/ipco) with the longest side among those an HEIF or AVIF file
// declares; 0×0 for a file without one. Every image item's extent is
// there: the primary image's, a grid's, its tiles', a thumbnail's. It
// reads box headers only and never fails: a damaged header is the
// decoder's to report.
func longestItemExtent(data []byte) (width, height uint32) {
	meta, found := child(data, "meta", true)
	if !found {
		return 0, 0
	}
	iprp, found := child(meta, "iprp", false)
	if !found {
		return 0, 0
	}
	ipco, found := child(iprp, "ipco", false)
	if !found {
		return 0, 0
	}
	walk(ipco, func(typ string, body []byte) bool {
		ispe, ok := fullBody(body)
		if typ != "ispe" || !ok || len(ispe) < 8 {
			return true
		}
		w, h := binary.BigEndian.Uint32(ispe), binary.BigEndian.Uint32(ispe[4:])
		if max(w, h) > max(width, height) {
			width, height = w, h
		}
		return true
	})
	return width, height
}
