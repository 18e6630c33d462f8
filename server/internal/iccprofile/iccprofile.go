// Package iccprofile reads the structure of an ICC colour profile — its
// header, its tag table and the processing elements of its float
// transforms — without building a colour transform from it. It answers
// what building one will cost before lcms is asked.
//
// lcms builds a transform by sampling it at tens of thousands of colours,
// each taken through every processing element of the profile's float tag
// (D2B0–D2B3, preferred to every other tag where present), and reads each
// element afresh for every time the tag lists it. A multi-process-element
// tag may list the same few bytes of element any number of times, so a
// profile of 800 KB, which a PNG compresses to 12 KB, can ask for minutes
// of work and gigabytes of memory.
package iccprofile

import (
	"encoding/binary"
	"errors"
)

// ErrNotProfile reports data that is no ICC profile: too short for a
// header, or without its "acsp" signature. lcms does not open it either.
var ErrNotProfile = errors.New("not an ICC profile")

// Profile is what Read finds in a profile.
type Profile struct {
	// FloatTags are the signatures of its multi-process-element tags,
	// such as "D2B0": transforms lcms evaluates element by element, in
	// floating point. Tags sharing their data are one transform.
	FloatTags []string
	// FloatSteps is what one colour passes through in those transforms
	// together: 1 for each matrix or lookup table (or element lcms reads
	// past), and for each curve set, the segments of its curves (lcms
	// looks a value's segment up one by one). An element or curve listed
	// again counts again. Read stops counting a little past stepsCeiling.
	FloatSteps int
	// FloatBytes is the element data lcms reads and holds for those
	// transforms: lookup tables, matrices and sampled curve segments, as
	// far as the profile holds their data, counted again for each time a
	// tag lists them.
	FloatBytes int64
}

// maxTags is the most tags lcms reads: it does not open a profile that
// lists more.
const maxTags = 100

// stepsCeiling is where Read stops counting steps: lcms would take
// minutes over such a profile, and the count keeps Read's own work
// bounded by the data's size.
const stepsCeiling = 1 << 16

// Read reads a profile's header and tag table, and walks each
// multi-process-element tag the way lcms reads it: element by element from
// the tag's position table, each curve set's curves from its own, offsets
// added in 32 bits as lcms adds them. A tag ends where lcms would stop
// reading it (an element it does not know, a position past the data): what
// comes before is counted, since lcms reads that much before it gives up.
func Read(data []byte) (Profile, error) {
	if len(data) < 132 || string(data[36:40]) != "acsp" {
		return Profile{}, ErrNotProfile
	}
	var p Profile
	w := walker{r: reader{data}}
	walked := map[uint32]bool{}
	count := int64(binary.BigEndian.Uint32(data[128:]))
	for i := range min(count, maxTags, int64(len(data)-132)/12) {
		e := data[132+12*i:]
		sig, offset := string(e[:4]), binary.BigEndian.Uint32(e[4:])
		if tag, ok := w.r.sig(offset); !ok || tag != "mpet" {
			continue
		}
		p.FloatTags = append(p.FloatTags, sig)
		if !walked[offset] && w.steps <= stepsCeiling {
			walked[offset] = true
			w.transform(offset)
		}
	}
	p.FloatSteps, p.FloatBytes = w.steps, w.bytes
	return p, nil
}

// walker counts what lcms would read.
type walker struct {
	r     reader
	steps int
	bytes int64
}

// transform counts the mpet tag at offset: channels, element count, then
// the position table of (offset, size) pairs, offsets from the tag's
// start. It stops once the steps pass stepsCeiling.
func (w *walker) transform(tag uint32) {
	count, ok := w.r.u32(tag + 12)
	if !ok || int64(tag)+16+8*int64(count) > int64(len(w.r.data)) {
		return // lcms checks the table fits before it reads an element
	}
	for i := range count {
		offset, _ := w.r.u32(tag + 16 + 8*i)
		if !w.element(tag+offset) || w.steps > stepsCeiling {
			return
		}
	}
}

// element counts one element, and reports whether lcms reads on past it.
// Offsets add as lcms adds them, in 32 bits.
func (w *walker) element(at uint32) bool {
	r := w.r
	sig, ok := r.sig(at)
	if !ok || !r.fits(at, 8) { // its signature and 4 reserved bytes
		return false
	}
	if sig == "bACS" || sig == "eACS" { // lcms reads past them, and no further
		w.steps++
		return true
	}
	in, okIn := r.u16(at + 8)
	out, okOut := r.u16(at + 10)
	if !okIn || !okOut {
		return false
	}
	switch sig {
	case "matf":
		w.steps++
		w.bytes += r.held(at+12, 4*(int64(in)*int64(out)+int64(out)))
		return true
	case "clut":
		w.steps++
		entries := int64(out)
		for d := range min(in, 16) {
			g, _ := r.u8(at + 12 + d)
			entries = min(entries*max(int64(g), 1), int64(len(r.data))) // past the data either way
		}
		w.bytes += r.held(at+28, 4*entries)
		return true
	case "cvst":
		if in != out || int64(at)+12+8*int64(in) > int64(len(r.data)) {
			return false
		}
		for c := range in {
			offset, _ := r.u32(at + 12 + 8*c)
			if !w.curve(at+offset) || w.steps > stepsCeiling {
				return false
			}
		}
		return true
	}
	return false
}

// curve counts one segmented curve: its segments, and the points of its
// sampled segments.
func (w *walker) curve(at uint32) bool {
	r := w.r
	sig, ok := r.sig(at)
	segments, okSegments := r.u16(at + 8)
	if !ok || !okSegments || sig != "curf" || segments < 1 {
		return false
	}
	w.steps += int(segments)
	next := int64(at) + 12 + 4*(int64(segments)-1) // past the break points
	for range segments {
		if next > int64(len(r.data)) {
			return false
		}
		kind, ok := r.sig(uint32(next))
		if !ok {
			return false
		}
		switch kind {
		case "parf": // a formula of 4, 5 or 5 parameters
			function, _ := r.u16(uint32(next) + 8)
			if function > 2 {
				return false
			}
			next += 12 + 4*[]int64{4, 5, 5}[function]
		case "samf":
			points, _ := r.u32(uint32(next) + 8)
			w.bytes += r.held(uint32(next)+12, 4*int64(points))
			next += 12 + 4*int64(points)
		default:
			return false
		}
	}
	return true
}

// reader reads big-endian fields at offsets, reporting those past the data.
type reader struct{ data []byte }

func (r reader) fits(at uint32, n int64) bool { return int64(at)+n <= int64(len(r.data)) }

func (r reader) sig(at uint32) (string, bool) {
	if !r.fits(at, 4) {
		return "", false
	}
	return string(r.data[at : at+4]), true
}

func (r reader) u8(at uint32) (uint32, bool) {
	if !r.fits(at, 1) {
		return 0, false
	}
	return uint32(r.data[at]), true
}

func (r reader) u16(at uint32) (uint32, bool) {
	if !r.fits(at, 2) {
		return 0, false
	}
	return uint32(binary.BigEndian.Uint16(r.data[at:])), true
}

func (r reader) u32(at uint32) (uint32, bool) {
	if !r.fits(at, 4) {
		return 0, false
	}
	return binary.BigEndian.Uint32(r.data[at:]), true
}

// held is how many of n bytes from at the data holds: what lcms can read
// of an element's data before it runs out.
func (r reader) held(at uint32, n int64) int64 {
	if int64(at) >= int64(len(r.data)) {
		return 0
	}
	return min(n, int64(len(r.data))-int64(at))
}
