package imaging

import (
	"bytes"
	"encoding/binary"
)

// cicp is how an image's values are coded, in the code points of ITU-T
// H.273 that an AVIF or HEIF states in its "nclx" colour box and a PNG in
// its cICP chunk. libvips' loaders ignore both and hand the decoded values
// on as if they were sRGB: an HDR image (PQ or HLG) then comes out grey
// and washed out, a wide-gamut one (BT.2020, Display P3) dull.
type cicp struct {
	primaries, transfer uint16
}

// H.273 code points this service converts from.
const (
	primariesBT709  = 1
	primariesBT2020 = 9
	primariesP3     = 12 // SMPTE EG 432-1, Display P3

	transferPQ  = 16 // SMPTE ST 2084
	transferHLG = 18 // ARIB STD-B67
)

// hdr says whether the values are coded for high dynamic range.
func (c cicp) hdr() bool { return c.transfer == transferPQ || c.transfer == transferHLG }

// converted says whether the decoded values need converting to be sRGB:
// HDR coding, or wide-gamut primaries. Anything else (BT.709 or unstated
// primaries with an SDR transfer) is taken as sRGB, as libvips takes it.
func (c cicp) converted() bool {
	return c.hdr() || c.primaries == primariesBT2020 || c.primaries == primariesP3
}

// coding reads how an image's values are coded where its format states it
// in H.273 code points: a PNG's cICP chunk, an AVIF's or HEIF's nclx box.
// ok is false when it states none. It never fails: a damaged header is the
// decoder's to report.
func coding(data []byte) (c cicp, ok bool) {
	if bytes.HasPrefix(data, pngSignature) {
		return pngCICP(data[len(pngSignature):])
	}
	return nclx(data)
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// pngCICP reads the cICP chunk among a PNG's chunks (after its signature),
// which comes before the image data.
func pngCICP(chunks []byte) (cicp, bool) {
	for len(chunks) >= 12 {
		n := uint64(binary.BigEndian.Uint32(chunks))
		if n > uint64(len(chunks)-12) {
			return cicp{}, false
		}
		switch string(chunks[4:8]) {
		case "cICP":
			if n < 4 {
				return cicp{}, false
			}
			return cicp{primaries: uint16(chunks[8]), transfer: uint16(chunks[9])}, true
		case "IDAT", "IEND":
			return cicp{}, false
		}
		chunks = chunks[12+n:]
	}
	return cicp{}, false
}

// maxPropertyIndex is the largest index ipma can give a property (15 bits).
const maxPropertyIndex = 1<<15 - 1

// nclx reads the nclx colour box of an AVIF's or HEIF's primary item: the
// colour property the item is associated with in ipma, or, in a file that
// does not associate one, the first nclx box among the properties. ok is
// false when the file states no nclx colour (an ICC profile, or nothing).
// It reads only the header boxes and never fails: a damaged header is the
// decoder's to report.
func nclx(data []byte) (c cicp, ok bool) {
	meta, found := child(data, "meta", true)
	if !found {
		return cicp{}, false
	}
	props := readItemProperties(meta)
	if primary, hasPrimary := primaryItem(meta); hasPrimary {
		for _, body := range props.of(primary, "colr") {
			if c, ok := nclxOf(body); ok {
				return c, true
			}
		}
	}
	for i, body := range props.bodies {
		if props.types[i] == "colr" {
			if c, ok := nclxOf(body); ok {
				return c, true
			}
		}
	}
	return cicp{}, false
}

// itemProperties are a meta box's item properties (ipco's boxes, numbered
// from 1 as ipma refers to them, up to the last index it can name: a
// header of tiny boxes holds no more) and ipma, which associates them with
// items.
type itemProperties struct {
	bodies [][]byte
	types  []string
	ipma   []byte
}

func readItemProperties(meta []byte) itemProperties {
	var p itemProperties
	iprp, found := child(meta, "iprp", false)
	if !found {
		return p
	}
	if ipco, found := child(iprp, "ipco", false); found {
		walk(ipco, func(typ string, body []byte) bool {
			p.bodies, p.types = append(p.bodies, body), append(p.types, typ)
			return len(p.bodies) < maxPropertyIndex
		})
	}
	p.ipma, _ = child(iprp, "ipma", false)
	return p
}

// of lists the bodies of item's properties of type typ, in ipma's order.
func (p itemProperties) of(item uint32, typ string) [][]byte {
	return p.typed(associations(p.ipma, item), typ)
}

func (p itemProperties) typed(indices []int, typ string) (bodies [][]byte) {
	for _, index := range indices {
		if index >= 1 && index <= len(p.bodies) && p.types[index-1] == typ {
			bodies = append(bodies, p.bodies[index-1])
		}
	}
	return bodies
}

// extentOf is the size the first ispe among indices states; ok is false
// where there is none.
func (p itemProperties) extentOf(indices []int) (width, height uint32, ok bool) {
	for _, body := range p.typed(indices, "ispe") {
		if ispe, full := fullBody(body); full && len(ispe) >= 8 {
			return binary.BigEndian.Uint32(ispe), binary.BigEndian.Uint32(ispe[4:]), true
		}
	}
	return 0, 0, false
}

// nclxOf reads a colr box's body when it is an nclx one.
func nclxOf(body []byte) (cicp, bool) {
	if len(body) < 10 || string(body[:4]) != "nclx" {
		return cicp{}, false
	}
	return cicp{primaries: binary.BigEndian.Uint16(body[4:]), transfer: binary.BigEndian.Uint16(body[6:])}, true
}

// primaryItem reads pitm, the primary item's ID.
func primaryItem(meta []byte) (uint32, bool) {
	pitm, found := child(meta, "pitm", false)
	if !found || len(pitm) < 4 {
		return 0, false
	}
	r := reader{b: pitm[4:]}
	id := uint32(r.u16())
	if pitm[0] != 0 {
		r = reader{b: pitm[4:]}
		id = r.u32()
	}
	return id, r.ok()
}

// associations lists the property indices ipma associates with item.
func associations(ipma []byte, item uint32) (indices []int) {
	eachAssociation(ipma, func(id uint32, props []int) bool {
		if id == item {
			indices = props
			return false
		}
		return true
	})
	return indices
}

// eachAssociation calls visit with each item ipma lists and the property
// indices it associates with it, until visit returns false or the box
// ends.
func eachAssociation(ipma []byte, visit func(item uint32, indices []int) bool) {
	full, found := fullBody(ipma)
	if !found {
		return
	}
	version, flags := ipma[0], ipma[3]
	r := reader{b: full}
	entries := r.u32()
	for e := uint32(0); e < entries && r.ok(); e++ {
		var id uint32
		if version < 1 {
			id = uint32(r.u16())
		} else {
			id = r.u32()
		}
		count := int(r.u8())
		var indices []int
		for a := 0; a < count && r.ok(); a++ {
			if flags&1 != 0 {
				indices = append(indices, int(r.u16()&0x7fff))
			} else {
				indices = append(indices, int(r.u8()&0x7f))
			}
		}
		if !r.ok() || !visit(id, indices) {
			return
		}
	}
}

// fullBody is a FullBox's body after its version and flags.
func fullBody(body []byte) ([]byte, bool) {
	if len(body) < 4 {
		return nil, false
	}
	return body[4:], true
}

// child finds the first box of type typ directly inside container and
// returns its body (past version and flags for a FullBox, when full).
func child(container []byte, typ string, full bool) (found []byte, ok bool) {
	walk(container, func(t string, body []byte) bool {
		if t != typ {
			return true
		}
		found, ok = body, true
		if full {
			found, ok = fullBody(body)
		}
		return false
	})
	return found, ok
}

// walk calls visit for each box in data, in order, until visit returns
// false or the data ends or stops making sense.
func walk(data []byte, visit func(typ string, body []byte) bool) {
	for len(data) >= 8 {
		size := uint64(binary.BigEndian.Uint32(data))
		typ := string(data[4:8])
		header := uint64(8)
		switch size {
		case 0: // to the end
			size = uint64(len(data))
		case 1: // a 64-bit size follows
			if len(data) < 16 {
				return
			}
			size, header = binary.BigEndian.Uint64(data[8:]), 16
		}
		if size < header || size > uint64(len(data)) {
			return
		}
		if !visit(typ, data[header:size]) {
			return
		}
		data = data[size:]
	}
}

// reader reads big-endian integers, remembering whether it ran out.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) ok() bool { return !r.bad }

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
