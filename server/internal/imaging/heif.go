package imaging

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/imgedge/imgedge/server/internal/transform"
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

// maxSequenceSamples is the most samples, and the most chunks, the tracks
// of an HEIF or AVIF image sequence may declare in all. libheif builds
// tables of every track's samples when it opens the file, before libvips
// reads its still image, and a track's sample sizes may be one number for
// all: a 3 KB animated AVIF declaring ten million samples took a server's
// peak RSS up by 614 MB (libheif takes up to 18 million a track, in up to
// 100 tracks). An animation of this many frames plays for most of an hour
// at 30 frames a second; the service animates at most
// transform.MaxAnimationFrames.
const maxSequenceSamples = 100_000

// checkSequence refuses an image sequence whose tracks declare more
// samples or chunks than maxSequenceSamples in all.
func checkSequence(name string, data []byte) error {
	samples, chunks := sequenceTables(data)
	if samples > maxSequenceSamples || chunks > maxSequenceSamples {
		return fmt.Errorf("%w: the %s's tracks declare %d samples in %d chunks, and libheif builds a table of each before the still image is read: this service reads up to %d",
			transform.ErrUnsupportedImage, name, samples, chunks, maxSequenceSamples)
	}
	return nil
}

// sequenceTables sums what the tracks of every moov box declare in their
// sample tables (mdia/minf/stbl), whatever they hold: the samples their
// stsz (or stz2) box counts, and the chunks their stco (or co64) box
// lists. It reads box headers and counts only.
func sequenceTables(data []byte) (samples, chunks int64) {
	walk(data, func(typ string, moov []byte) bool {
		if typ != "moov" {
			return true
		}
		walk(moov, func(typ string, trak []byte) bool {
			if typ != "trak" {
				return true
			}
			stbl := trak
			for _, typ := range []string{"mdia", "minf", "stbl"} {
				var found bool
				if stbl, found = child(stbl, typ, false); !found {
					return true
				}
			}
			// stsz and stz2 hold the count after one 32-bit field; stco
			// and co64 start with theirs.
			for _, table := range []struct {
				typ   string
				at    int
				count *int64
			}{{"stsz", 4, &samples}, {"stz2", 4, &samples}, {"stco", 0, &chunks}, {"co64", 0, &chunks}} {
				if body, found := child(stbl, table.typ, true); found && len(body) >= table.at+4 {
					*table.count += int64(binary.BigEndian.Uint32(body[table.at:]))
				}
			}
			return true
		})
		return true
	})
	return samples, chunks
}

// heifSizesHold checks the sizes an AVIF's or HEIF's header declares
// before libvips reads it, against what decoding it would take. libvips
// reports, and the memory budget reserves for, the size the primary image
// states; libheif decodes grids, overlays, tiles and alpha planes at the
// sizes they declare themselves. Refused:
//   - a side past libvips' largest coordinate (maxCoord), which it would
//     read as 1 pixel wide (GLib complaining on stderr): ErrTooLarge;
//   - a grid or overlay larger than the image it states, or a grid with
//     tiles wholly outside its canvas (derivedImage), and an item larger
//     than the image (itemPastPrimary): ErrUnsupportedImage, as no
//     encoder writes them.
func heifSizesHold(name string, data []byte, maxCoord int64) error {
	if w, h := longestItemExtent(data); int64(max(w, h)) > maxCoord {
		return fmt.Errorf("%w: the %s header declares an image of %d×%d, and this service's libvips reads at most %d pixels a side",
			transform.ErrTooLarge, name, w, h, maxCoord)
	}
	for _, d := range derivedImages(data) {
		switch {
		case d.pastItsSize():
			return fmt.Errorf("%w: the %s's %s is %d×%d, larger than the %d×%d image it states: libheif would compose all of it before refusing the mismatch",
				transform.ErrUnsupportedImage, name, d.kind, d.width, d.height, d.statedW, d.statedH)
		case d.tilesPastCanvas():
			return fmt.Errorf("%w: the %s's grid of %d×%d tiles of %d×%d has a column or row of tiles wholly outside its %d×%d canvas, which MIAF forbids: libheif would decode every one",
				transform.ErrUnsupportedImage, name, d.cols, d.rows, d.tileW, d.tileH, d.width, d.height)
		}
	}
	if item, primary, found := itemPastPrimary(data); found {
		return fmt.Errorf("%w: the %s holds an item of %d×%d (an alpha plane, a tile or a thumbnail), larger than its %d×%d image: decoding the image would decode that item whole",
			transform.ErrUnsupportedImage, name, item[0], item[1], primary[0], primary[1])
	}
	return nil
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
	props := readItemProperties(meta)
	for i, body := range props.bodies {
		ispe, ok := fullBody(body)
		if props.types[i] != "ispe" || !ok || len(ispe) < 8 {
			continue
		}
		w, h := binary.BigEndian.Uint32(ispe), binary.BigEndian.Uint32(ispe[4:])
		if max(w, h) > max(width, height) {
			width, height = w, h
		}
	}
	return width, height
}

// derivedImage is a grid or an overlay (ISO/IEC 23008-12, 6.6.2): an image
// item that libheif composes from others onto a canvas whose size its own
// data declares.
type derivedImage struct {
	kind             string // "grid" or "iovl"
	width, height    uint32 // the canvas its data declares
	rows, cols       uint32 // a grid's tiles
	statedW, statedH uint32 // the size its ispe property states, 0×0 for none
	tileW, tileH     uint32 // a grid's first tile's ispe, 0×0 where unknown
}

// pastItsSize says whether the canvas is larger than the size the item
// states, or it states none. libheif composes such an image whole, at the
// canvas's size, and only then refuses it for not matching: a 10 KB AVIF
// stating 64×64 whose grid of 225 tiles is 15360×15360 made it decode 236
// MP (426 MB of RSS) first, against a memory reservation made for 64×64.
func (d derivedImage) pastItsSize() bool {
	return uint64(d.width)*uint64(d.height) > uint64(d.statedW)*uint64(d.statedH)
}

// tilesPastCanvas says whether a grid's last column or row of tiles lies
// wholly outside its canvas, which MIAF forbids (ISO/IEC 23000-22,
// 7.3.11.4.2): libheif decodes every tile all the same, so a 1024×1024
// grid of 15×15 tiles of 1024 px (10 KB) cost 225 tile decodes.
func (d derivedImage) tilesPastCanvas() bool {
	return d.kind == "grid" && d.tileW > 0 && d.tileH > 0 &&
		(uint64(d.tileW)*uint64(d.cols-1) >= uint64(d.width) || uint64(d.tileH)*uint64(d.rows-1) >= uint64(d.height))
}

// maxItems bounds the items derivedImages reads (libheif refuses a file
// of more than 256 at all).
const maxItems = 1024

// derivedImages reads the grids and overlays of an HEIF or AVIF file: each
// one's canvas from its data, its stated size from its ispe, and a grid's
// tile size from the ispe of its first tile (iref's dimg). It reads box
// headers and the derived items' few bytes of data only, and never fails:
// a damaged header is the decoder's to report, and an item it cannot read
// is left out.
func derivedImages(data []byte) []derivedImage {
	meta, found := child(data, "meta", true)
	if !found {
		return nil
	}
	kinds := derivedItems(meta)
	if len(kinds) == 0 {
		return nil
	}
	props := readItemProperties(meta)
	idat, _ := child(meta, "idat", false)
	inputs := firstInputs(meta)
	var images []derivedImage
	itemLocations(meta, func(id uint32, start, length uint64, inIdat bool) bool {
		kind, derived := kinds[id]
		if !derived {
			return true
		}
		source := data
		if inIdat {
			source = idat
		}
		d, ok := canvasOf(kind, source, start, length)
		if !ok {
			return true
		}
		d.statedW, d.statedH, _ = props.extentOf(associations(props.ipma, id))
		if input, ok := inputs[id]; ok && kind == "grid" {
			d.tileW, d.tileH, _ = props.extentOf(associations(props.ipma, input))
		}
		images = append(images, d)
		return true
	})
	return images
}

// firstInputs maps each derived item to the first item its iref dimg box
// names: a grid's first tile.
func firstInputs(meta []byte) map[uint32]uint32 {
	iref, found := child(meta, "iref", false)
	if !found || len(iref) < 4 {
		return nil
	}
	wide := iref[0] != 0 // version 1: 32-bit item IDs
	inputs := map[uint32]uint32{}
	walk(iref[4:], func(typ string, body []byte) bool {
		if typ != "dimg" {
			return len(inputs) < maxItems
		}
		r := reader{b: body}
		id := func() uint32 {
			if wide {
				return r.u32()
			}
			return uint32(r.u16())
		}
		from := id()
		if count := r.u16(); count > 0 {
			if to := id(); r.ok() {
				inputs[from] = to
			}
		}
		return len(inputs) < maxItems
	})
	return inputs
}

// derivedItems maps the IDs of a meta box's grid and overlay items to
// their types, from iinf's item info entries (versions 2 and 3, which
// carry the type).
func derivedItems(meta []byte) map[uint32]string {
	iinf, found := child(meta, "iinf", false)
	if !found || len(iinf) < 4+2 {
		return nil
	}
	entries := iinf[4+2:] // version 0: a 16-bit count
	if iinf[0] != 0 {
		entries = iinf[min(len(iinf), 4+4):]
	}
	kinds := map[uint32]string{}
	seen := 0
	walk(entries, func(typ string, infe []byte) bool {
		seen++
		if typ != "infe" || len(infe) < 4 || infe[0] < 2 {
			return seen < maxItems
		}
		r := reader{b: infe[4:]}
		id := uint32(r.u16())
		if infe[0] >= 3 {
			r = reader{b: infe[4:]}
			id = r.u32()
		}
		r.u16() // protection index
		if kind := string(r.take(4)); r.ok() && (kind == "grid" || kind == "iovl") {
			kinds[id] = kind
		}
		return seen < maxItems
	})
	return kinds
}

// itemLocations calls visit with each item's ID and where its first extent
// starts and how long it is (0: to the end), as iloc places it: from the
// file's start, or from idat's body (inIdat). An item placed another way
// (by another item's data) is left out.
func itemLocations(meta []byte, visit func(id uint32, start, length uint64, inIdat bool) bool) {
	iloc, found := child(meta, "iloc", false)
	if !found || len(iloc) < 4 {
		return
	}
	version := iloc[0]
	r := reader{b: iloc[4:]}
	sizes := r.u16()
	offsetSize, lengthSize := int(sizes>>12), int(sizes>>8&15)
	baseSize, indexSize := int(sizes>>4&15), int(sizes&15)
	if version != 1 && version != 2 {
		indexSize = 0
	}
	sized := func(n int) uint64 {
		switch n {
		case 4:
			return uint64(r.u32())
		case 8:
			return uint64(r.u32())<<32 | uint64(r.u32())
		case 0:
			return 0
		}
		r.bad = true
		return 0
	}
	var count uint32
	if version < 2 {
		count = uint32(r.u16())
	} else {
		count = r.u32()
	}
	for i := uint32(0); i < min(count, maxItems) && r.ok(); i++ {
		var id uint32
		if version < 2 {
			id = uint32(r.u16())
		} else {
			id = r.u32()
		}
		method := uint16(0)
		if version == 1 || version == 2 {
			method = r.u16() & 15
		}
		r.u16() // data reference index
		base := sized(baseSize)
		extents := int(r.u16())
		if extents == 0 {
			continue
		}
		sized(indexSize)
		offset, length := sized(offsetSize), sized(lengthSize)
		r.take((extents - 1) * (indexSize + offsetSize + lengthSize)) // the others
		if !r.ok() || method > 1 || base+offset < base {
			continue
		}
		if !visit(id, base+offset, length, method == 1) {
			return
		}
	}
}

// canvasOf reads the canvas size a grid's or an overlay's data declares
// (16-bit fields, or 32-bit where its flags' low bit is set), the data
// being length bytes (0: to the end) of source from start.
func canvasOf(kind string, source []byte, start, length uint64) (derivedImage, bool) {
	if start > uint64(len(source)) {
		return derivedImage{}, false
	}
	body := source[start:]
	if length > 0 && length < uint64(len(body)) {
		body = body[:length]
	}
	r := reader{b: body}
	r.u8() // version
	flags := r.u8()
	var rows, cols uint8
	if kind == "grid" {
		rows, cols = r.u8(), r.u8() // less one each
	} else {
		r.take(8) // the canvas's fill value, 16 bits a channel
	}
	d := derivedImage{kind: kind, rows: uint32(rows) + 1, cols: uint32(cols) + 1}
	if flags&1 != 0 {
		d.width, d.height = r.u32(), r.u32()
	} else {
		d.width, d.height = uint32(r.u16()), uint32(r.u16())
	}
	return d, r.ok()
}

// itemPastPrimary finds an image item whose ispe states a larger image
// than the primary item's: an alpha plane, a tile, a thumbnail. Decoding
// the primary image decodes its alpha plane and its tiles whole, whatever
// their size, while the memory the job reserves follows the primary's: a
// 1.3 KB AVIF stating 64×64 with an 8192×8192 alpha plane took ~1 GB of
// RSS and 4.4 s to decode, and its variant came out 64×64. In a file
// written as the formats ask, no item is larger than the image: AVIF's
// alpha plane is the image's size, a grid's tiles are at most its canvas,
// thumbnails and depth maps are smaller. It reads box headers only and
// never fails: a damaged header is the decoder's to report.
func itemPastPrimary(data []byte) (item, primary [2]uint32, found bool) {
	meta, ok := child(data, "meta", true)
	if !ok {
		return item, primary, false
	}
	id, ok := primaryItem(meta)
	if !ok {
		return item, primary, false
	}
	props := readItemProperties(meta)
	w, h, ok := props.extentOf(associations(props.ipma, id))
	if !ok {
		return item, primary, false
	}
	primary = [2]uint32{w, h}
	eachAssociation(props.ipma, func(other uint32, indices []int) bool {
		if w, h, ok := props.extentOf(indices); ok && uint64(w)*uint64(h) > uint64(primary[0])*uint64(primary[1]) {
			item, found = [2]uint32{w, h}, true
		}
		return !found
	})
	return item, primary, found
}
