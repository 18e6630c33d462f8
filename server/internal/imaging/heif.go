package imaging

import "encoding/binary"

// heifFormat names the format of an ISOBMFF image file by the brands its
// ftyp box lists: "avif" when any brand is AVIF's (avif for a still image,
// avis for an image sequence: an animated AVIF), "heif" for HEIF's other
// brands (heic, heix, mif1, msf1, ...). ok is false for anything else.
// Every brand counts, not only the major one: an animated AVIF's major brand
// is avis, and some encoders name mif1 first and avif among the others.
func heifFormat(data []byte) (name string, ok bool) {
	if len(data) < 16 || string(data[4:8]) != "ftyp" {
		return "", false
	}
	size := uint64(binary.BigEndian.Uint32(data))
	if size < 16 || size > uint64(len(data)) {
		return "", false
	}
	brands := [][]byte{data[8:12]} // the major brand; then the minor version
	for b := data[16:size]; len(b) >= 4; b = b[4:] {
		brands = append(brands, b[:4])
	}
	for _, b := range brands {
		if brand := string(b); brand == "avif" || brand == "avis" {
			return "avif", true
		}
	}
	for _, b := range brands {
		switch string(b) {
		case "heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "mif2", "msf1":
			return "heif", true
		}
	}
	return "", false
}

// maxSequenceFrames bounds the frame count sequenceFrames reports.
const maxSequenceFrames = 1 << 20

// sequenceFrames is the number of frames in an HEIF or AVIF image sequence
// (an animated AVIF): the most samples any track in its moov box holds, as
// its stsz (or stz2) box counts them; 0 for a file without one. libheif,
// and so libvips, reads only such a file's still image, its first frame.
// It reads box headers only and never fails: a damaged header is the
// decoder's to report.
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
		frames = max(frames, trackSamples(trak))
		return frames < maxSequenceFrames
	})
	return min(frames, maxSequenceFrames)
}

// trackSamples reads a trak box's sample count from
// mdia/minf/stbl/stsz (or stz2): both hold it after their version and
// flags and one more 32-bit field.
func trackSamples(trak []byte) int {
	box := trak
	for _, typ := range []string{"mdia", "minf", "stbl"} {
		var found bool
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
