package jpegscan

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

func TestRead(t *testing.T) {
	heavy := testimages.ProgressiveJPEG(64, 48, 3, true)
	const heavyScans = 3 * (1 + 63*14)
	baseline := testimages.JPEG(100, 60, 90)
	tests := []struct {
		name        string
		data        []byte
		wantW       int
		wantH       int
		progressive bool
		scans       int
		sampling    [][2]int
		coefBytes   int64
	}{
		{"baseline 4:2:0 (Go's encoder)", baseline, 100, 60, false, 1, [][2]int{{2, 2}, {1, 1}, {1, 1}}, 0},
		{"baseline without its end-of-image marker", baseline[:len(baseline)-2], 100, 60, false, 1, [][2]int{{2, 2}, {1, 1}, {1, 1}}, 0},
		{"baseline, entropy data full of stuffed 0xFF", testimages.NoiseJPEG(64, 64, 100), 64, 64, false, 1, [][2]int{{2, 2}, {1, 1}, {1, 1}}, 0},
		{"progressive grey, one scan per coefficient and bit", testimages.ProgressiveJPEG(20, 10, 1, true), 20, 10, true, 1 + 63*14, [][2]int{{1, 1}}, 3 * 2 * 128},
		{"progressive 4:4:4, two scans per component", testimages.ProgressiveJPEG(64, 48, 3, false), 64, 48, true, 6, [][2]int{{1, 1}, {1, 1}, {1, 1}}, 3 * 8 * 6 * 128},
		{"progressive 4:4:4, every scan the standard allows", heavy, 64, 48, true, heavyScans, [][2]int{{1, 1}, {1, 1}, {1, 1}}, 3 * 8 * 6 * 128},
		{"progressive, cut short: the scans up to the cut", heavy[:len(heavy)/2], 64, 48, true, -1, [][2]int{{1, 1}, {1, 1}, {1, 1}}, 3 * 8 * 6 * 128},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Read(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if info.Precision != 8 {
				t.Errorf("precision %d, want 8", info.Precision)
			}
			if info.Width != tt.wantW || info.Height != tt.wantH || info.Progressive != tt.progressive {
				t.Errorf("%d×%d progressive %v, want %d×%d %v", info.Width, info.Height, info.Progressive, tt.wantW, tt.wantH, tt.progressive)
			}
			switch {
			case tt.scans < 0 && (info.Scans < 2 || info.Scans >= heavyScans):
				t.Errorf("%d scans in half the file, want some but not all", info.Scans)
			case tt.scans >= 0 && info.Scans != tt.scans:
				t.Errorf("%d scans, want %d", info.Scans, tt.scans)
			}
			if len(info.Components) != len(tt.sampling) {
				t.Fatalf("%d components, want %d", len(info.Components), len(tt.sampling))
			}
			for k, c := range info.Components {
				if [2]int{c.H, c.V} != tt.sampling[k] {
					t.Errorf("component %d sampled %d×%d, want %v", k, c.H, c.V, tt.sampling[k])
				}
			}
			if got := info.CoefficientBytes(); got != tt.coefBytes {
				t.Errorf("coefficient buffer %d bytes, want %d", got, tt.coefBytes)
			}
			if info.QuantTables[0] == nil {
				t.Error("no table 0")
			}
			if ended := bytes.HasSuffix(tt.data, []byte{0xFF, 0xD9}); info.Ended != ended {
				t.Errorf("ended %v, want %v", info.Ended, ended)
			}
		})
	}
}

// TestRepeatedTables: a table defined again replaces the last, and a
// header of 100,000 definitions allocates no more than one of four.
func TestRepeatedTables(t *testing.T) {
	jpg := testimages.JPEG(16, 16, 90)
	dqt := func(value byte) []byte {
		return append([]byte{0xFF, 0xDB, 0, 67, 0x00}, bytes.Repeat([]byte{value}, 64)...)
	}
	var many []byte
	for range 100_000 {
		many = append(many, dqt(7)...)
	}
	data := append(append(append([]byte{}, jpg[:2]...), many...), jpg[2:]...)
	info, err := Read(append(append(append([]byte{}, jpg[:2]...), dqt(9)...), jpg[2:]...))
	if err != nil || info.QuantTables[0][0] == 9 {
		t.Fatalf("Read = %v, table 0 starts %d; want the JPEG's own table, defined after", err, info.QuantTables[0][0])
	}
	if allocs := testing.AllocsPerRun(5, func() { _, _ = Read(data) }); allocs > 8 {
		t.Errorf("Read of 100,000 table definitions: %v allocations", allocs)
	}
}

// TestAppSegments: application segments are counted wherever a decoder
// reads them, before the frame and between scans, and not past the end
// of the image.
func TestAppSegments(t *testing.T) {
	app := func(n byte, size int) []byte {
		return append([]byte{0xFF, 0xE0 + n, byte((size + 2) >> 8), byte(size + 2)}, make([]byte, size)...)
	}
	splice := func(data []byte, at int, segs ...[]byte) []byte {
		out := append([]byte{}, data[:at]...)
		for _, seg := range segs {
			out = append(out, seg...)
		}
		return append(out, data[at:]...)
	}
	jpg := testimages.JPEG(32, 32, 90)
	prog := testimages.ProgressiveJPEG(32, 32, 3, false)
	secondScan := bytes.Index(prog[bytes.Index(prog, []byte{0xFF, 0xDA})+2:], []byte{0xFF, 0xDA}) + bytes.Index(prog, []byte{0xFF, 0xDA}) + 2
	tests := []struct {
		name     string
		data     []byte
		segments [16]int
		bytes    [16]int64
	}{
		{"none", jpg, [16]int{}, [16]int64{}},
		{"APP1 twice and APP13 before the frame", splice(jpg, 2, app(1, 100), app(13, 5), app(1, 65533)), [16]int{1: 2, 13: 1}, [16]int64{1: 65633, 13: 5}},
		{"APP2 between scans", splice(prog, secondScan, app(2, 14), app(2, 0)), [16]int{2: 2}, [16]int64{2: 14}},
		{"APP1 after the end of the image", append(append([]byte{}, jpg...), app(1, 10)...), [16]int{}, [16]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Read(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if info.AppSegments != tt.segments || info.AppBytes != tt.bytes {
				t.Errorf("segments %v of %v bytes, want %v of %v", info.AppSegments, info.AppBytes, tt.segments, tt.bytes)
			}
		})
	}
}

// TestCoefficientBytes: the buffer libjpeg allocates for a 7000×7000
// progressive JPEG (measured as the decode's peak memory: 148 MB for
// 4:2:0, 288 MB for 4:4:4).
func TestCoefficientBytes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		comps []Component
		want  int64
	}{
		{"4:4:4", []Component{{H: 1, V: 1}, {H: 1, V: 1}, {H: 1, V: 1}}, 3 * 875 * 875 * 128},
		{"4:2:0", []Component{{H: 2, V: 2}, {H: 1, V: 1}, {H: 1, V: 1}}, 875*876*128 + 2*438*438*128},
	} {
		info := Info{Width: 7000, Height: 7000, Progressive: true, Components: tt.comps}
		if got := info.CoefficientBytes(); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
		info.Progressive, info.FirstScanComponents = false, len(tt.comps)
		if got := info.CoefficientBytes(); got != 0 {
			t.Errorf("%s, one interleaved sequential scan: %d, want 0", tt.name, got)
		}
		info.FirstScanComponents = 1
		if got := info.CoefficientBytes(); got != tt.want {
			t.Errorf("%s, sequential in one scan per component: %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	soi := []byte{0xFF, 0xD8}
	frame := []byte{0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 0}
	scan := []byte{0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"a GIF", []byte("GIF89a......")},
		{"no frame", cat(soi, []byte{0xFF, 0xD9})},
		{"a scan before the frame", cat(soi, scan, frame)},
		{"a length past the end", cat(soi, []byte{0xFF, 0xDB, 0x00, 0x45, 0x00})},
		{"sampling factor 0", cat(soi, []byte{0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x01, 0}, scan)},
		{"two frames", cat(soi, frame, frame, scan)},
	} {
		if info, err := Read(tt.data); err == nil {
			t.Errorf("%s: read as %+v", tt.name, info)
		}
	}
	// Stray bytes between segments are skipped, as a decoder skips them.
	if info, err := Read(cat(soi, []byte{0x12, 0x34}, frame, scan, []byte{0xFF, 0xD9})); err != nil || info.Scans != 1 || info.Width != 8 {
		t.Errorf("stray bytes before the frame: %+v, %v; want the frame and its scan", info, err)
	}
	if _, err := Read([]byte("GIF89a")); !errors.Is(err, ErrNotJPEG) {
		t.Errorf("a GIF: %v, want ErrNotJPEG", err)
	}
}

func TestNextMarker(t *testing.T) {
	for _, tt := range []struct {
		name string
		data []byte
		want int
		ok   bool
	}{
		{"a marker", []byte{1, 2, 0xFF, 0xDA}, 2, true},
		{"stuffed zero, then a marker", []byte{0xFF, 0x00, 3, 0xFF, 0xD9}, 3, true},
		{"restart markers are data", []byte{0xFF, 0xD0, 1, 0xFF, 0xD7, 0xFF, 0xC4}, 5, true},
		{"fill bytes before a marker", []byte{1, 0xFF, 0xFF, 0xFF, 0xDA}, 3, true},
		{"none", []byte{1, 2, 0xFF, 0x00}, 0, false},
		{"a lone 0xFF at the end", []byte{1, 0xFF}, 0, false},
	} {
		got, ok := nextMarker(tt.data, 0)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: %d %v, want %d %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestHeaderSlips: a JFIF segment whose major version is not 1 is found
// as a decoder finds it (14 bytes at least, "JFIF\x00" first), and so are a
// sequential scan's parameters other than 0, 63 and 0; set, they are what
// the decoder takes them for, and nothing else changes.
func TestHeaderSlips(t *testing.T) {
	jpg := testimages.JPEG(16, 16, 90)
	app0 := func(id string, major byte, size int) []byte {
		seg := append([]byte(id), major, 2, 0, 0, 1, 0, 1, 0, 0)
		seg = append(seg, make([]byte, max(0, size-len(seg)))...)[:size]
		return append([]byte{0xFF, 0xE0, byte((size + 2) >> 8), byte(size + 2)}, seg...)
	}
	with := func(segs ...[]byte) []byte { return bytes.Join([][]byte{jpg[:2], bytes.Join(segs, nil), jpg[2:]}, nil) }
	sos := bytes.Index(jpg, []byte{0xFF, 0xDA}) + 4 + 1 + 2*3 // Go's encoder: three components
	scan := func(data []byte, ss, se, ahal byte) []byte {
		out := slices.Clone(data)
		copy(out[sos:], []byte{ss, se, ahal})
		return out
	}
	progressive := testimages.ProgressiveJPEG(16, 8, 3, false)
	for _, tc := range []struct {
		name  string
		data  []byte
		slips int
	}{
		{"JFIF 1.02", with(app0("JFIF\x00", 1, 14)), 0},
		{"JFIF 2.02", with(app0("JFIF\x00", 2, 14)), 1},
		{"JFIF 0.02, with a thumbnail", with(app0("JFIF\x00", 0, 200)), 1},
		{"too short to be read", with(app0("JFIF\x00", 2, 13)), 0},
		{"JFXX", with(app0("JFXX\x00", 2, 14)), 0},
		{"two", with(app0("JFIF\x00", 3, 14), app0("JFIF\x00", 1, 14), app0("JFIF\x00", 9, 16)), 2},
		{"more than the bound", with(bytes.Repeat(app0("JFIF\x00", 2, 14), maxHeaderSlips+1)), maxHeaderSlips},
		{"a sequential scan as it should be", jpg, 0},
		{"a sequential scan's parameters all 0", scan(jpg, 0, 0, 0), 1},
		{"a sequential scan's parameters all wrong", scan(jpg, 1, 5, 0x12), 3},
		{"a progressive JPEG's scans", progressive, 0},
	} {
		info, err := Read(tc.data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(info.HeaderSlips) != tc.slips {
			t.Errorf("%s: %d slips, want %d", tc.name, len(info.HeaderSlips), tc.slips)
		}
		set := info.WithHeaderSlipsSet(tc.data)
		changed := 0
		for k := range set {
			if set[k] != tc.data[k] {
				changed++
			}
		}
		if changed != tc.slips {
			t.Errorf("%s: %d bytes changed, want %d", tc.name, changed, tc.slips)
		}
		if again, err := Read(set); err != nil || len(again.HeaderSlips) != 0 && tc.slips < maxHeaderSlips {
			t.Errorf("%s: set, %d slips left, %v", tc.name, len(again.HeaderSlips), err)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(testimages.JPEG(16, 16, 80))
	f.Add(testimages.ProgressiveJPEG(16, 8, 3, true))
	j := testimages.JPEG(16, 16, 80)
	f.Add(append(append(j[:2:2], 0x12, 0xFF, 0x00, 0x34), j[2:]...))                                              // stray bytes in the header
	f.Add(append(append(j[:2:2], 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 2, 1, 0, 0, 1, 0, 1, 0, 0), j[2:]...)) // JFIF 2.01
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 0, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Read(data)
		if err != nil {
			return
		}
		if info.Scans < 0 || info.CoefficientBytes() < 0 {
			t.Fatalf("%d scans, %d coefficient bytes", info.Scans, info.CoefficientBytes())
		}
		for _, c := range info.Components {
			if c.H < 1 || c.H > 4 || c.V < 1 || c.V > 4 {
				t.Fatalf("sampling %d×%d accepted", c.H, c.V)
			}
		}
		if info.MultiScan() != (info.CoefficientBytes() > 0) && info.Width > 0 && info.Height > 0 {
			t.Fatalf("multi-scan %v but %d coefficient bytes", info.MultiScan(), info.CoefficientBytes())
		}
		// Without its stray header bytes, the JPEG reads the same, and
		// has none.
		clean := info.WithoutStrayHeaderBytes(data)
		again, err := Read(clean)
		if err != nil {
			t.Fatalf("without its stray header bytes: %v", err)
		}
		if len(again.StrayHeaderBytes) != 0 && !info.StrayHeaderOverflow || again.Width != info.Width || again.Height != info.Height || again.Scans != info.Scans || again.Ended != info.Ended {
			t.Fatalf("without its stray header bytes %+v, was %+v", again, info)
		}
		// With its header slips set, it reads the same, and has none left
		// (unless it had more than Read records).
		set := info.WithHeaderSlipsSet(data)
		again, err = Read(set)
		if err != nil {
			t.Fatalf("with its header slips set: %v", err)
		}
		if len(again.HeaderSlips) != 0 && len(info.HeaderSlips) < maxHeaderSlips || again.Width != info.Width || again.Height != info.Height || again.Scans != info.Scans || again.Ended != info.Ended {
			t.Fatalf("with its header slips set %+v, was %+v", again, info)
		}
	})
}
