package iccprofile

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

var identity = [9]float32{1, 0, 0, 0, 1, 0, 0, 0, 1}

// element is raw element bytes: a signature, 4 reserved bytes, then body.
func element(sig string, body ...byte) []byte {
	return append(append([]byte(sig), 0, 0, 0, 0), body...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func f32s(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// segmentedCurveSet is a curve set of three channels sharing one curve of
// n segments: n-1 break points, then n formulas y = x.
func segmentedCurveSet(n int) []byte {
	curve := append([]byte("curf\x00\x00\x00\x00"), byte(n>>8), byte(n), 0, 0)
	for i := range n - 1 {
		curve = append(curve, f32s(float32(i)/float32(n))...)
	}
	for range n {
		curve = append(curve, "parf\x00\x00\x00\x00\x00\x00\x00\x00"...)
		curve = append(curve, f32s(1, 1, 0, 0)...)
	}
	e := element("cvst", 0, 3, 0, 3)
	for range 3 {
		e = append(append(e, u32(12+3*8)...), u32(uint32(len(curve)))...)
	}
	return append(e, curve...)
}

// sampledCurveSet is a curve set of three channels sharing one curve: a
// formula up to 0, then points sampled points.
func sampledCurveSet(points int) []byte {
	curve := append([]byte("curf\x00\x00\x00\x00"), 0, 2, 0, 0)
	curve = append(curve, f32s(0)...)
	curve = append(curve, "parf\x00\x00\x00\x00\x00\x00\x00\x00"...)
	curve = append(curve, f32s(1, 1, 0, 0)...)
	curve = append(append(curve, "samf\x00\x00\x00\x00"...), u32(uint32(points))...)
	for i := range points {
		curve = append(curve, f32s(float32(i+1)/float32(points))...)
	}
	e := element("cvst", 0, 3, 0, 3)
	for range 3 {
		e = append(append(e, u32(12+3*8)...), u32(uint32(len(curve)))...)
	}
	return append(e, curve...)
}

// lookupTable is a 3-in, 3-out float lookup table of grid points a side.
func lookupTable(grid byte) []byte {
	e := element("clut", 0, 3, 0, 3, grid, grid, grid)
	e = append(e, make([]byte, 13)...)
	return append(e, make([]byte, 4*3*int(grid)*int(grid)*int(grid))...)
}

// floatProfile is a profile of a private tag holding a matrix element,
// then tags sigs, each the same mpet listing kinds[list[i]].
func floatProfile(kinds [][]byte, list []int, sigs ...string) []byte {
	mpet := testimages.MultiProcessElements(kinds, list)
	tags := []testimages.ICCTag{{Sig: "zzzz", Data: testimages.MatrixElement(identity)}}
	for _, sig := range sigs {
		tags = append(tags, testimages.ICCTag{Sig: sig, Data: mpet})
	}
	return testimages.ICCProfile(tags...)
}

func repeat(n int, of ...int) []int {
	var list []int
	for range n {
		list = append(list, of...)
	}
	return list
}

func TestRead(t *testing.T) {
	matrix, curves := testimages.MatrixElement(identity), testimages.CurveSetElement(1)
	tests := []struct {
		name      string
		data      []byte
		floatTags []string
		steps     int
		bytes     int64
	}{
		{"no float tags", testimages.DescribedProfile("sRGB"), nil, 0, 0},
		{"curves and a matrix, as an sRGB profile's float tags hold them", testimages.FloatProfile(2), []string{"D2B0", "D2B1", "D2B2"}, 3 + 1, 48},
		{"the same two elements listed 5,000 times each", testimages.FloatProfile(10000), []string{"D2B0", "D2B1", "D2B2"}, 3*5000 + 5000, 48 * 5000},
		{"float tags of their own data each count", testimages.ICCProfile(
			testimages.ICCTag{Sig: "D2B0", Data: testimages.MultiProcessElements([][]byte{matrix}, []int{0})},
			testimages.ICCTag{Sig: "B2D0", Data: testimages.MultiProcessElements([][]byte{matrix}, []int{0, 0})},
		), []string{"D2B0", "B2D0"}, 3, 3 * 48},
		{"a curve of 100 segments", floatProfile([][]byte{segmentedCurveSet(100)}, []int{0}, "D2B0"), []string{"D2B0"}, 3 * 100, 0},
		{"a curve of 65,535 segments, stopped past the ceiling", floatProfile([][]byte{segmentedCurveSet(65535)}, []int{0}, "D2B0"), []string{"D2B0"}, 2 * 65535, 0},
		{"sampled segments hold their points", floatProfile([][]byte{sampledCurveSet(1000)}, []int{0}, "D2B0"), []string{"D2B0"}, 3 * 2, 3 * 4 * 1000},
		{"a lookup table holds its grid", floatProfile([][]byte{lookupTable(9)}, []int{0, 0}, "D2B0"), []string{"D2B0"}, 2, 2 * 4 * 3 * 9 * 9 * 9},
		{"elements past an unknown one are not read", floatProfile([][]byte{matrix, element("abcd", 0, 3, 0, 3)}, []int{0, 0, 1, 0}, "D2B0"), []string{"D2B0"}, 2, 2 * 48},
		{"an element lcms reads past needs no channels, even at the data's end", floatProfile([][]byte{matrix, []byte("bACS\x00\x00\x00\x00")}, []int{1, 0, 0, 0}, "D2B0"), []string{"D2B0"}, 1 + 3, 3 * 48},
		{"elements lcms reads past count", floatProfile([][]byte{element("bACS", 0, 3, 0, 3), curves}, []int{0, 1, 0}, "D2B0"), []string{"D2B0"}, 1 + 3 + 1, 0},
		{"a tag past the hundredth is not read (lcms opens no such profile)", func() []byte {
			tags := make([]testimages.ICCTag, 100, 101)
			for i := range tags {
				tags[i] = testimages.ICCTag{Sig: "zzzz", Data: matrix}
			}
			return testimages.ICCProfile(append(tags, testimages.ICCTag{Sig: "D2B0", Data: testimages.MultiProcessElements([][]byte{matrix}, repeat(1000, 0))})...)
		}(), nil, 0, 0},
		{"a million elements, stopped past the ceiling", floatProfile([][]byte{matrix}, repeat(1<<20, 0), "D2B0"), []string{"D2B0"}, stepsCeiling + 1, 48 * (stepsCeiling + 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Read(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.FloatTags, tt.floatTags) || p.FloatSteps != tt.steps || p.FloatBytes != tt.bytes {
				t.Errorf("float tags %q, %d steps, %d bytes; want %q, %d, %d", p.FloatTags, p.FloatSteps, p.FloatBytes, tt.floatTags, tt.steps, tt.bytes)
			}
		})
	}
}

// TestReadAsLCMSReads checks the places where lcms stops reading a tag, or
// reads on where a careless reader would stop.
func TestReadAsLCMSReads(t *testing.T) {
	matrix := testimages.MatrixElement(identity)
	profile := floatProfile([][]byte{matrix}, []int{0, 0, 0}, "D2B0")
	tag := int(binary.BigEndian.Uint32(profile[132+12+4:]))
	if string(profile[tag:tag+4]) != "mpet" {
		t.Fatalf("the second tag is %q", profile[tag:tag+4])
	}
	entry := func(p []byte, i int) []byte { return p[tag+16+8*i:] }

	t.Run("a position table past the data is not read", func(t *testing.T) {
		p := slices.Clone(profile)
		binary.BigEndian.PutUint32(p[tag+12:], uint32(len(p)))
		got := read(t, p)
		if got.FloatSteps != 0 || !slices.Equal(got.FloatTags, []string{"D2B0"}) {
			t.Errorf("%d steps, tags %q", got.FloatSteps, got.FloatTags)
		}
	})
	t.Run("an element's offset wraps in 32 bits, as lcms adds it", func(t *testing.T) {
		// The third listing points at the matrix of the private tag before
		// the mpet, through an offset that only reaches it by wrapping.
		p := slices.Clone(profile)
		before := binary.BigEndian.Uint32(p[132+4:])
		binary.BigEndian.PutUint32(entry(p, 2), before-uint32(tag))
		if got := read(t, p); got.FloatSteps != 3 {
			t.Errorf("%d steps, want 3", got.FloatSteps)
		}
		binary.BigEndian.PutUint32(entry(p, 2), uint32(len(p)))
		if got := read(t, p); got.FloatSteps != 2 {
			t.Errorf("an element past the data: %d steps, want 2", got.FloatSteps)
		}
	})
	t.Run("a cut profile counts what it holds", func(t *testing.T) {
		p := profile[:len(profile)-4] // the matrix's last offset gone
		if got := read(t, p); got.FloatSteps != 3 || got.FloatBytes != 3*44 {
			t.Errorf("%d steps, %d bytes", got.FloatSteps, got.FloatBytes)
		}
	})
}

func read(t *testing.T, data []byte) Profile {
	t.Helper()
	p, err := Read(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNotProfile(t *testing.T) {
	valid := testimages.DescribedProfile("sRGB")
	noSignature := slices.Clone(valid)
	copy(noSignature[36:], "xxxx")
	for name, data := range map[string][]byte{
		"empty":                                 nil,
		"shorter than a header and a tag count": valid[:131],
		"no acsp signature":                     noSignature,
	} {
		if _, err := Read(data); !errors.Is(err, ErrNotProfile) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Read(valid[:132]); err != nil {
		t.Errorf("a header and a tag count, the tag table cut: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(testimages.DescribedProfile("sRGB"))
	f.Add(testimages.FloatProfile(6))
	f.Add(floatProfile([][]byte{segmentedCurveSet(3), sampledCurveSet(4), lookupTable(2), element("eACS", 0, 3, 0, 3)}, []int{0, 1, 2, 3}, "D2B0", "D2B1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Read(data)
		if err != nil {
			return
		}
		if p.FloatSteps < 0 || p.FloatSteps > stepsCeiling+65535*2 || p.FloatBytes < 0 {
			t.Fatalf("%d steps, %d bytes", p.FloatSteps, p.FloatBytes)
		}
		if len(p.FloatTags) == 0 && (p.FloatSteps != 0 || p.FloatBytes != 0) {
			t.Fatalf("no float tags, %d steps, %d bytes", p.FloatSteps, p.FloatBytes)
		}
	})
}
