// Package jpegscan reads the structure of a JPEG file — its frame, its
// components' sampling, its quantisation tables and how many scans carry
// its data — without decoding it. It answers what a decode will cost
// before a decoder is asked: a progressive (or otherwise multi-scan) JPEG
// is decoded into a buffer of every coefficient of the whole image, and
// every scan walks all of that buffer's blocks, so a small file can hold
// thousands of scans that each cost a pass over a large image.
package jpegscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// ErrNotJPEG reports data that does not start as a JPEG file does.
var ErrNotJPEG = errors.New("not a JPEG file")

// Component is one colour component of the frame.
type Component struct {
	ID         int
	H, V       int // sampling factors, 1–4
	QuantTable int // the quantisation table it uses, 0–3
}

// Info is a JPEG's structure.
type Info struct {
	Width, Height int
	Precision     int  // bits a sample: 8, or 12 (or 2–16 for a lossless frame)
	Progressive   bool // a progressive frame (SOF2, SOF10)
	Arithmetic    bool // arithmetic-coded (SOF9–SOF15)
	Components    []Component
	// Scans counts the start-of-scan markers up to the end of the image
	// (or of the data, for a truncated file).
	Scans int
	// Ended says whether the end-of-image marker closes the data.
	Ended bool
	// StrayHeaderBytes are the byte ranges, [start, end), found between
	// marker segments before the first scan, which a decoder skips with a
	// warning ("extraneous bytes before marker"); at most maxStrayRanges,
	// with StrayHeaderOverflow set when there were more.
	StrayHeaderBytes    [][2]int
	StrayHeaderOverflow bool
	// HeaderSlips are header bytes that a decoder reads past with a
	// warning, each with the value it takes it for; they say nothing about
	// the pixels:
	//   - a JFIF segment's major version other than 1 ("unknown JFIF
	//     revision number"), taken for 1;
	//   - a sequential scan's spectral selection and successive
	//     approximation other than 0–63 and 0 ("Invalid SOS parameters for
	//     sequential JPEG": some encoders leave them 0), which a sequential
	//     decoder does not use.
	// At most maxHeaderSlips.
	HeaderSlips []ByteSlip
	// FirstScanComponents is how many components the first scan
	// interleaves: fewer than the frame's means the data comes in several
	// scans even for a sequential frame.
	FirstScanComponents int
	// QuantTables are the tables defined before the first scan, in the
	// order they are stored (zig-zag); a nil entry was not defined.
	QuantTables [4][]uint16
	// AppSegments counts the application segments APP0–APP15 up to the
	// end of the image, between scans too (where a decoder reads them as
	// well), and AppBytes sums their data.
	AppSegments [16]int
	AppBytes    [16]int64
}

// ByteSlip is one byte of a header field, at offset At of the data, and
// the value a decoder takes it for.
type ByteSlip struct {
	At    int
	Value byte
}

// MultiScan reports whether a decoder must buffer the whole image's
// coefficients: the frame is progressive, or its first scan leaves some
// components for later scans.
func (i Info) MultiScan() bool {
	return i.Progressive || (i.FirstScanComponents > 0 && i.FirstScanComponents < len(i.Components))
}

// CoefficientBytes is the size of the buffer a libjpeg decoder allocates
// for a multi-scan JPEG: every 8×8 block of every component, 64 16-bit
// coefficients each, at full resolution whatever the output's scale. It is
// 0 for a single-scan JPEG, which is decoded a row of blocks at a time.
func (i Info) CoefficientBytes() int64 {
	if !i.MultiScan() {
		return 0
	}
	hmax, vmax := 1, 1
	for _, c := range i.Components {
		hmax, vmax = max(hmax, c.H), max(vmax, c.V)
	}
	var total int64
	for _, c := range i.Components {
		blocksW := ceilDiv(int64(i.Width)*int64(c.H), int64(8*hmax))
		blocksH := ceilDiv(int64(i.Height)*int64(c.V), int64(8*vmax))
		// libjpeg rounds each component's rows up to its sampling factor.
		blocksH = ceilDiv(blocksH, int64(c.V)) * int64(c.V)
		total += blocksW * blocksH * 64 * 2
	}
	return total
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// Marker codes.
const (
	markerSOI   = 0xD8
	markerEOI   = 0xD9
	markerSOS   = 0xDA
	markerDQT   = 0xDB
	markerAPP0  = 0xE0
	markerAPP15 = 0xEF
	markerTEM   = 0x01
	markerRST0  = 0xD0
	markerRST7  = 0xD7
)

// Read walks data's marker segments as a libjpeg decoder does: the frame
// header and quantisation tables before the first scan, then every scan,
// skipping their entropy-coded data (and stray bytes between segments). It
// fails where a decoder would: no frame, a broken segment before the
// first scan. After it, a truncated file ends the count where its data
// ends; the decoder judges the damage.
func Read(data []byte) (Info, error) {
	var info Info
	if len(data) < 4 || data[0] != 0xFF || data[1] != markerSOI {
		return info, ErrNotJPEG
	}
	sawFrame, frame := false, byte(0)
	for i := 2; i < len(data); {
		if data[i] != 0xFF {
			// Entropy-coded data, which the next marker ends, or bytes
			// where none belong, which a decoder skips the same way (with
			// a warning).
			next, ok := nextMarker(data, i)
			if !ok {
				break
			}
			if info.Scans == 0 {
				info.strayHeader(i, next)
			}
			i = next
			continue
		}
		for i+1 < len(data) && data[i+1] == 0xFF { // fill bytes
			i++
		}
		if i+1 >= len(data) {
			break
		}
		marker := data[i+1]
		if marker == markerEOI {
			info.Ended = true
			break
		}
		if marker == markerTEM || (marker >= markerRST0 && marker <= markerRST7) || marker == 0x00 {
			i += 2 // no length; 0x00 only appears where data was expected
			continue
		}
		if i+4 > len(data) {
			break
		}
		size := int(binary.BigEndian.Uint16(data[i+2:]))
		if size < 2 || i+2+size > len(data) {
			if info.Scans > 0 {
				return info, nil
			}
			return info, fmt.Errorf("jpeg: marker 0x%02X at byte %d: length %d past the end of the data", marker, i, size)
		}
		seg := data[i+4 : i+2+size]
		if marker >= markerAPP0 && marker <= markerAPP15 {
			info.AppSegments[marker-markerAPP0]++
			info.AppBytes[marker-markerAPP0] += int64(len(seg))
		}
		var err error
		switch {
		case isFrame(marker):
			if sawFrame {
				return info, fmt.Errorf("jpeg: a second frame header at byte %d", i)
			}
			sawFrame, frame = true, marker
			err = readFrame(&info, marker, seg)
		case marker == markerDQT && info.Scans == 0:
			err = readQuantTables(&info, seg)
		case marker == markerAPP0:
			info.readJFIF(i+4, seg)
		case marker == markerSOS:
			if !sawFrame {
				return info, fmt.Errorf("jpeg: a scan before the frame header, at byte %d", i)
			}
			info.Scans++
			if info.Scans == 1 && len(seg) > 0 {
				info.FirstScanComponents = int(seg[0])
			}
			if sequentialDCT(frame) {
				info.readSequentialScan(i+4, seg)
			}
		}
		if err != nil {
			return info, err
		}
		i += 2 + size
	}
	if !sawFrame {
		return info, errors.New("jpeg: no frame header")
	}
	return info, nil
}

// maxStrayRanges bounds the stray ranges Read records: a header of
// thousands of gaps is no encoder's slip, and is left as it is.
const maxStrayRanges = 16

// strayHeader records the stray bytes data[start:end] of the header.
func (i *Info) strayHeader(start, end int) {
	if len(i.StrayHeaderBytes) == maxStrayRanges {
		i.StrayHeaderOverflow = true
		return
	}
	i.StrayHeaderBytes = append(i.StrayHeaderBytes, [2]int{start, end})
}

// maxHeaderSlips bounds the slips Read records: more than a few segments'
// worth is no encoder's habit. Those past it are not recorded, so the
// decoder still warns of them.
const maxHeaderSlips = 16

// slip records that data[at] holds what a decoder takes for value.
func (i *Info) slip(at int, value byte) {
	if len(i.HeaderSlips) < maxHeaderSlips {
		i.HeaderSlips = append(i.HeaderSlips, ByteSlip{at, value})
	}
}

// readJFIF reads the version of a JFIF segment, seg, at offset at of the
// data, as a decoder reads it: an APP0 segment of at least 14 bytes that
// starts with "JFIF\x00", then the major version.
func (i *Info) readJFIF(at int, seg []byte) {
	if len(seg) >= 14 && string(seg[:5]) == "JFIF\x00" && seg[5] != 1 {
		i.slip(at+5, 1)
	}
}

// sequentialDCT reports whether a frame marker starts a sequential DCT
// frame (SOF0, SOF1, SOF9), whose scans code every coefficient at once.
func sequentialDCT(frame byte) bool {
	return frame == 0xC0 || frame == 0xC1 || frame == 0xC9
}

// readSequentialScan reads a sequential frame's scan header, seg, at
// offset at of the data: after its components, spectral selection start
// and end, and successive approximation, which should be 0, 63 and 0. A
// header of another length is the decoder's to refuse.
func (i *Info) readSequentialScan(at int, seg []byte) {
	if len(seg) == 0 || len(seg) != 1+2*int(seg[0])+3 {
		return
	}
	params := 1 + 2*int(seg[0])
	for k, want := range [3]byte{0, 63, 0} {
		if seg[params+k] != want {
			i.slip(at+params+k, want)
		}
	}
}

// WithHeaderSlipsSet is data with its header slips set to what a decoder
// takes them for (a copy): the same image, without the warnings. It is
// data itself when there are none.
func (i Info) WithHeaderSlipsSet(data []byte) []byte {
	if len(i.HeaderSlips) == 0 {
		return data
	}
	out := slices.Clone(data)
	for _, s := range i.HeaderSlips {
		out[s.At] = s.Value
	}
	return out
}

// WithoutStrayHeaderBytes is data less the stray bytes Read found in its
// header (a copy), which a decoder skips as it would: the same image,
// without the warning. It is data itself when there are none.
func (i Info) WithoutStrayHeaderBytes(data []byte) []byte {
	if len(i.StrayHeaderBytes) == 0 {
		return data
	}
	out := make([]byte, 0, len(data))
	at := 0
	for _, r := range i.StrayHeaderBytes {
		out = append(out, data[at:r[0]]...)
		at = r[1]
	}
	return append(out, data[at:]...)
}

// isFrame reports whether marker starts a frame: SOF0–SOF15, except DHT
// (0xC4), JPG (0xC8) and DAC (0xCC), which share the range.
func isFrame(marker byte) bool {
	return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
}

func readFrame(info *Info, marker byte, seg []byte) error {
	if len(seg) < 6 {
		return errors.New("jpeg: short frame header")
	}
	info.Precision = int(seg[0])
	info.Height = int(binary.BigEndian.Uint16(seg[1:]))
	info.Width = int(binary.BigEndian.Uint16(seg[3:]))
	n := int(seg[5])
	if n == 0 {
		return errors.New("jpeg: a frame without components")
	}
	if len(seg) < 6+3*n {
		return fmt.Errorf("jpeg: the frame header lists %d components in %d bytes", n, len(seg))
	}
	info.Progressive = marker == 0xC2 || marker == 0xCA
	info.Arithmetic = marker >= 0xC9
	info.Components = make([]Component, n)
	for k := range n {
		c := seg[6+3*k:]
		comp := Component{ID: int(c[0]), H: int(c[1] >> 4), V: int(c[1] & 0x0F), QuantTable: int(c[2] & 0x03)}
		if comp.H < 1 || comp.H > 4 || comp.V < 1 || comp.V > 4 {
			return fmt.Errorf("jpeg: component %d has sampling factors %d×%d, outside 1–4", comp.ID, comp.H, comp.V)
		}
		info.Components[k] = comp
	}
	return nil
}

func readQuantTables(info *Info, seg []byte) error {
	for len(seg) > 0 {
		precision, id := seg[0]>>4, seg[0]&0x0F
		size := 1
		if precision == 1 {
			size = 2
		}
		if id > 3 || len(seg) < 1+64*size {
			return errors.New("jpeg: malformed quantisation table")
		}
		// A table defined again replaces the last in place: a file of
		// repeated definitions allocates four tables, not one per segment.
		table := info.QuantTables[id]
		if table == nil {
			table = make([]uint16, 64)
		}
		for k := range table {
			if size == 2 {
				table[k] = binary.BigEndian.Uint16(seg[1+2*k:])
			} else {
				table[k] = uint16(seg[1+k])
			}
		}
		info.QuantTables[id] = table
		seg = seg[1+64*size:]
	}
	return nil
}

// nextMarker finds the marker that ends the entropy-coded data at data[i:]:
// a 0xFF not followed by a stuffed zero, a restart marker or another 0xFF.
func nextMarker(data []byte, i int) (int, bool) {
	for {
		k := bytes.IndexByte(data[i:], 0xFF)
		if k < 0 {
			return 0, false
		}
		i += k
		j := i + 1
		for j < len(data) && data[j] == 0xFF {
			j++
		}
		if j >= len(data) {
			return 0, false
		}
		if b := data[j]; b == 0x00 || (b >= markerRST0 && b <= markerRST7) {
			i = j + 1
			continue
		}
		return j - 1, true
	}
}
