package testimages

import (
	"encoding/binary"
	"math"
	"unicode/utf16"
)

// The sRGB primaries adapted to D50, as the ICC's PCS takes them: XYZ = M
// × linear RGB, row by row.
var srgbToXYZD50 = [9]float32{
	0.4360747, 0.3850649, 0.1430804,
	0.2225045, 0.7168786, 0.0606169,
	0.0139322, 0.0970045, 0.7141733,
}

// FloatProfile is an RGB display profile (ICC version 4) whose float tags
// (D2B0–D2B2, multi-process elements) take each colour through elements
// processing elements: a curve set of gamma 2.2 (near sRGB's curve),
// sRGB's matrix, then, by turns, an identity matrix and an identity curve
// set. Every element of a kind is the same bytes, listed again by the
// tag's position table, as the ICC allows; the profile also holds the
// same matrix and curves as tags, as a display profile must. With
// elements 2, it is close to sRGB.
func FloatProfile(elements int) []byte {
	identity := [9]float32{1, 0, 0, 0, 1, 0, 0, 0, 1}
	kinds := [][]byte{CurveSetElement(2.2), MatrixElement(srgbToXYZD50), MatrixElement(identity), CurveSetElement(1)}
	list := make([]int, elements)
	for i := range list {
		list[i] = min(i, 2+i%2)
	}
	mpet := MultiProcessElements(kinds, list)
	return ICCProfile(
		ICCTag{"desc", multiLocalized("Test float profile")},
		ICCTag{"wtpt", xyzTag(0.9642, 1, 0.8249)},
		ICCTag{"rXYZ", xyzTag(0.4361, 0.2225, 0.0139)},
		ICCTag{"gXYZ", xyzTag(0.3851, 0.7169, 0.0971)},
		ICCTag{"bXYZ", xyzTag(0.1431, 0.0606, 0.7141)},
		ICCTag{"rTRC", gammaCurve(2.2)}, ICCTag{"gTRC", gammaCurve(2.2)}, ICCTag{"bTRC", gammaCurve(2.2)},
		ICCTag{"D2B0", mpet}, ICCTag{"D2B1", mpet}, ICCTag{"D2B2", mpet},
	)
}

// WithAPP2Profile is a JPEG carrying profile in APP2 segments after its
// SOI marker, as ICC.1 Annex B.4 sets out: 65,519 bytes a segment at most.
func WithAPP2Profile(jpg, profile []byte) []byte {
	const perSegment = 65519
	count := (len(profile) + perSegment - 1) / perSegment
	out := append([]byte{}, jpg[:2]...)
	for i := range count {
		chunk := profile[i*perSegment : min(len(profile), (i+1)*perSegment)]
		out = append(out, 0xFF, 0xE2)
		out = binary.BigEndian.AppendUint16(out, uint16(2+12+2+len(chunk)))
		out = append(out, "ICC_PROFILE\x00"...)
		out = append(out, byte(i+1), byte(count))
		out = append(out, chunk...)
	}
	return append(out, jpg[2:]...)
}

// ICCTag is one tag of a profile: its signature and its data.
type ICCTag struct {
	Sig  string
	Data []byte
}

// ICCProfile lays out an RGB display profile (version 4): the header, the
// tag table, and each tag's data once (tags with the same data share it).
func ICCProfile(tags ...ICCTag) []byte {
	tableEnd := 128 + 4 + 12*len(tags)
	p := make([]byte, tableEnd)
	p[8] = 4
	copy(p[12:], "mntrRGB XYZ ")
	copy(p[36:], "acsp")
	binary.BigEndian.PutUint32(p[68:], 0xF6D6) // D50, the PCS's illuminant
	binary.BigEndian.PutUint32(p[72:], 0x10000)
	binary.BigEndian.PutUint32(p[76:], 0xD32D)
	binary.BigEndian.PutUint32(p[128:], uint32(len(tags)))
	at := map[string]int{}
	for i, tag := range tags {
		offset, ok := at[string(tag.Data)]
		if !ok {
			offset = len(p)
			at[string(tag.Data)] = offset
			p = append(p, tag.Data...)
			for len(p)%4 != 0 {
				p = append(p, 0)
			}
		}
		e := p[132+12*i:]
		copy(e, tag.Sig)
		binary.BigEndian.PutUint32(e[4:], uint32(offset))
		binary.BigEndian.PutUint32(e[8:], uint32(len(tag.Data)))
	}
	binary.BigEndian.PutUint32(p, uint32(len(p)))
	return p
}

// MultiProcessElements is an mpet tag (3 channels in and out) listing
// kinds[list[i]] for each i: its position table points each listing at the
// one copy of its kind.
func MultiProcessElements(kinds [][]byte, list []int) []byte {
	head := 16 + 8*len(list)
	offsets := make([]int, len(kinds))
	body := []byte{}
	for k, e := range kinds {
		offsets[k] = head + len(body)
		body = append(body, e...)
	}
	t := append([]byte("mpet\x00\x00\x00\x00"), 0, 3, 0, 3)
	t = binary.BigEndian.AppendUint32(t, uint32(len(list)))
	for _, k := range list {
		t = binary.BigEndian.AppendUint32(t, uint32(offsets[k]))
		t = binary.BigEndian.AppendUint32(t, uint32(len(kinds[k])))
	}
	return append(t, body...)
}

// MatrixElement is a 3×3 matrix element with no offsets.
func MatrixElement(m [9]float32) []byte {
	e := append([]byte("matf\x00\x00\x00\x00"), 0, 3, 0, 3)
	for _, v := range append(m[:], 0, 0, 0) {
		e = binary.BigEndian.AppendUint32(e, math.Float32bits(v))
	}
	return e
}

// CurveSetElement is a curve set of three channels, each the same
// one-segment curve y = x^gamma, stored once.
func CurveSetElement(gamma float32) []byte {
	curve := append([]byte("curf\x00\x00\x00\x00"), 0, 1, 0, 0) // one segment, no break points
	curve = append(curve, "parf\x00\x00\x00\x00"...)
	curve = append(curve, 0, 0, 0, 0) // function type 0: (a·x + b)^gamma + c
	for _, v := range []float32{gamma, 1, 0, 0} {
		curve = binary.BigEndian.AppendUint32(curve, math.Float32bits(v))
	}
	e := append([]byte("cvst\x00\x00\x00\x00"), 0, 3, 0, 3)
	const curveAt = 12 + 3*8
	for range 3 {
		e = binary.BigEndian.AppendUint32(e, curveAt)
		e = binary.BigEndian.AppendUint32(e, uint32(len(curve)))
	}
	return append(e, curve...)
}

func xyzTag(x, y, z float64) []byte {
	t := []byte("XYZ \x00\x00\x00\x00")
	for _, v := range []float64{x, y, z} {
		t = binary.BigEndian.AppendUint32(t, uint32(int32(math.Round(v*65536))))
	}
	return t
}

func gammaCurve(gamma float64) []byte {
	t := append([]byte("curv\x00\x00\x00\x00"), 0, 0, 0, 1)
	return binary.BigEndian.AppendUint16(t, uint16(math.Round(gamma*256)))
}

func multiLocalized(s string) []byte {
	text := utf16.Encode([]rune(s))
	t := append([]byte("mluc\x00\x00\x00\x00"), 0, 0, 0, 1, 0, 0, 0, 12)
	t = append(t, "enUS"...)
	t = binary.BigEndian.AppendUint32(t, uint32(2*len(text)))
	t = binary.BigEndian.AppendUint32(t, 28)
	for _, c := range text {
		t = binary.BigEndian.AppendUint16(t, c)
	}
	return t
}
