package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/color"
	"slices"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// ftyp is an ftyp box of a major brand and compatible brands.
func ftyp(major string, compatible ...string) []byte {
	body := []byte(major + "\x00\x00\x00\x00")
	for _, b := range compatible {
		body = append(body, b...)
	}
	return box("ftyp", body)
}

// sequence is the moov box of a file whose picture tracks hold these
// sample counts, in stsz boxes (stz2 where compact).
func sequence(compact bool, samples ...uint32) []byte {
	var traks [][]byte
	for _, n := range samples {
		traks = append(traks, track("pict", compact, n))
	}
	return box("moov", traks...)
}

// track is a trak box of handler type handler holding n samples.
func track(handler string, compact bool, n uint32) []byte {
	sizes := box("stsz", binary.BigEndian.AppendUint32(make([]byte, 8), n))
	if compact {
		sizes = box("stz2", binary.BigEndian.AppendUint32(make([]byte, 8), n))
	}
	return box("trak", box("tkhd", make([]byte, 84)),
		box("mdia", box("hdlr", []byte("\x00\x00\x00\x00\x00\x00\x00\x00"+handler)),
			box("minf", box("stbl", box("stsd", make([]byte, 8)), sizes))))
}

func TestHEIFFormat(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"still AVIF", ftyp("avif", "mif1", "miaf"), "avif"},
		{"animated AVIF", ftyp("avis", "avif", "msf1"), "avif"},
		{"mif1 first, avif among the others", ftyp("mif1", "avif", "miaf"), "avif"},
		{"HEIC", ftyp("heic", "mif1", "heic"), "heif"},
		{"10-bit HEIC", ftyp("heix", "mif1", "heix"), "heif"},
		{"HEIF", ftyp("mif1", "mif1"), "heif"},
		// The low-overhead form ("mini" for meta): mif3, then the image
		// format's brand where the minor version goes.
		{"low-overhead AVIF", box("ftyp", []byte("mif3avif")), "avif"},
		{"low-overhead HEIC", box("ftyp", []byte("mif3heic")), "heif"},
		{"MP4 video", ftyp("isom", "iso2", "avc1", "mp41"), ""},
		{"a box past the end", ftyp("avif")[:14], ""},
		{"avif past the brands read", ftyp("isom", append(slices.Repeat([]string{"iso8"}, maxBrands), "avif")...), ""},
		{"avif among the brands read", ftyp("isom", append(slices.Repeat([]string{"iso8"}, maxBrands-1), "avif")...), "avif"},
		{"a size past the end", append([]byte{0, 0, 1, 0}, ftyp("avif")[4:]...), ""},
		{"not ISOBMFF", testimages.JPEG(8, 8, 80), ""},
	} {
		got, ok := heifFormat(c.data)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: heifFormat = %q, %v; want %q", c.name, got, ok, c.want)
		}
	}
	// A file of 16 MB that is all ftyp box: a few brands read, nothing
	// allocated.
	huge := ftyp("isom", slices.Repeat([]string{"iso8"}, 4<<20)...)
	if allocs := testing.AllocsPerRun(10, func() { heifFormat(huge) }); allocs != 0 {
		t.Errorf("heifFormat of a 16 MB ftyp box: %v allocations", allocs)
	}
}

func TestSequenceFrames(t *testing.T) {
	head := ftyp("avis", "avif", "msf1")
	fixture := fixture(t, "animated.avif")
	for _, c := range []struct {
		name string
		data []byte
		want int
	}{
		{"avifenc's four frames", fixture, 4},
		{"still AVIF", heifWith([][]byte{box("ispe", make([]byte, 12))}, []byte{1}), 0},
		{"a track of 12", append(head, sequence(false, 12)...), 12},
		{"colour and alpha tracks", append(head, sequence(false, 30, 30)...), 30},
		{"compact sizes", append(head, sequence(true, 7)...), 7},
		{"a video handler", append(head, box("moov", track("vide", false, 9))...), 9},
		{"frames beside more audio samples", append(head, box("moov", track("pict", false, 5), track("soun", false, 40))...), 5},
		{"an absurd count", append(head, sequence(false, 1<<31)...), maxSequenceFrames},
		{"a track without samples", append(head, box("moov", box("trak", box("mdia")))...), 0},
		{"cut inside the moov box", append(head, sequence(false, 12)...)[:len(head)+40], 0},
	} {
		if got := sequenceFrames(c.data); got != c.want {
			t.Errorf("%s: %d frames, want %d", c.name, got, c.want)
		}
	}
}

// TestSequenceTables: samples and chunks are summed over every track of
// every moov box, picture or not, whatever the tables hold.
func TestSequenceTables(t *testing.T) {
	head := ftyp("avis", "avif", "msf1")
	offsets := func(typ string, n uint32) []byte {
		return box("trak", box("mdia", box("minf", box("stbl", box(typ, binary.BigEndian.AppendUint32(make([]byte, 4), n))))))
	}
	for _, c := range []struct {
		name            string
		data            []byte
		samples, chunks int64
	}{
		{"avifenc's four frames, colour and alpha", fixture(t, "animated.avif"), 8, 2},
		{"a still AVIF", fixture(t, "p3.avif"), 0, 0},
		{"tracks of 12 and 30", append(head, sequence(false, 12, 30)...), 42, 0},
		{"compact sizes, and audio", append(head, box("moov", track("pict", true, 7), track("soun", false, 1<<31))...), 7 + 1<<31, 0},
		{"two moov boxes", append(append(head, sequence(false, 5)...), sequence(false, 6)...), 11, 0},
		{"32- and 64-bit chunk offsets", append(head, box("moov", offsets("stco", 3), offsets("co64", 1<<20))...), 0, 3 + 1<<20},
		{"cut inside the moov box", append(head, sequence(false, 12)...)[:len(head)+40], 0, 0},
	} {
		if samples, chunks := sequenceTables(c.data); samples != c.samples || chunks != c.chunks {
			t.Errorf("%s: %d samples in %d chunks, want %d in %d", c.name, samples, chunks, c.samples, c.chunks)
		}
	}
}

// TestSequenceLimit: an image sequence declaring more samples than
// maxSequenceSamples (its sizes one number for all, so its file stays
// small) is refused from its header, before libheif builds their tables;
// avifenc's animation is read.
func TestSequenceLimit(t *testing.T) {
	animated := fixture(t, "animated.avif")
	if _, err := proc.Probe(animated); err != nil {
		t.Fatalf("avifenc's animation: %v", err)
	}
	declared := bytes.Clone(animated)
	at := bytes.Index(declared, []byte("stsz")) + 4 // its version and flags
	binary.BigEndian.PutUint32(declared[at+4:], 10) // every sample 10 bytes
	binary.BigEndian.PutUint32(declared[at+8:], maxSequenceSamples)
	_, err := proc.Probe(declared)
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "declare 100004 samples") {
		t.Errorf("a track of %d samples beside a track of 4: %v, want ErrUnsupportedImage naming them", maxSequenceSamples, err)
	}
}

// ispe is an image spatial extent property of w×h.
func ispe(w, h uint32) []byte {
	return box("ispe", binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(make([]byte, 4), w), h))
}

func TestLongestItemExtent(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		w, h uint32
	}{
		{"avifenc's still image", fixture(t, "p3.avif"), 256, 192},
		{"a grid, its tiles and a thumbnail", heifWith([][]byte{ispe(512, 256), ispe(4000, 3000), ispe(160, 120)}, []byte{2}), 4000, 3000},
		{"a portrait primary image", heifWith([][]byte{ispe(20, 30000), ispe(4000, 3000)}, []byte{1}), 20, 30000},
		{"a claim past any decoder", heifWith([][]byte{ispe(1<<31, 48)}, []byte{1}), 1 << 31, 48},
		{"an ispe cut short", heifWith([][]byte{box("ispe", make([]byte, 8))}, []byte{1}), 0, 0},
		{"no ispe", heifWith(nil, nil), 0, 0},
		{"no meta box", ftyp("avif"), 0, 0},
		{"an animation's moov alone", append(ftyp("avis", "avif"), sequence(false, 4)...), 0, 0},
	} {
		if w, h := longestItemExtent(c.data); w != c.w || h != c.h {
			t.Errorf("%s: %d×%d, want %d×%d", c.name, w, h, c.w, c.h)
		}
	}
}

// TestExtentPastLibvips: an AVIF or HEIF whose header declares an image
// wider or taller than libvips can hold (100,000,000 px a side) is refused
// from its header as too large. libvips read such a header as 1 pixel wide
// (GLib printing a critical warning to stderr, in the middle of the JSON
// log), the pixel limit passed it, and the job was admitted for the
// decoder to refuse.
func TestExtentPastLibvips(t *testing.T) {
	for _, name := range []string{"p3.avif", "animated.avif", "collection.avif", "photo.heic"} {
		data := fixture(t, name)
		at := bytes.Index(data, []byte("ispe"))
		if at < 4 {
			t.Fatalf("%s has no ispe box", name)
		}
		for _, side := range []int{0, 4} { // width, then height
			claim := slices.Clone(data)
			binary.BigEndian.PutUint32(claim[at+8+side:], 2_130_706_496)
			_, err := proc.Probe(claim)
			if !errors.Is(err, transform.ErrTooLarge) || !strings.Contains(err.Error(), "2130706496") {
				t.Errorf("%s declaring a side of 2,130,706,496 px: Probe = %v, want ErrTooLarge naming the size", name, err)
			}
		}
	}
	// Past the limit by one pixel, and at it: the limit is libvips' own.
	data := fixture(t, "p3.avif")
	at := bytes.Index(data, []byte("ispe"))
	for side, wantErr := range map[uint32]bool{100_000_001: true, 100_000_000: false} {
		claim := slices.Clone(data)
		binary.BigEndian.PutUint32(claim[at+8:], side)
		info, err := proc.Probe(claim)
		if gotErr := errors.Is(err, transform.ErrTooLarge); gotErr != wantErr || !wantErr && info.Width != int(side) {
			t.Errorf("p3.avif declaring %d px wide: Probe = %+v, %v; want refused %v", side, info, err, wantErr)
		}
	}
}

// TestAnimatedAVIF: libvips tells AVIF by its ftyp box's major brand and
// refused an animated AVIF (brand avis) as no image at all. It is an AVIF
// of its frames, and a variant of it is the first frame (the still image
// libheif reads), as for any animation in a format that keeps no frames.
func TestAnimatedAVIF(t *testing.T) {
	data := fixture(t, "animated.avif")
	info, err := proc.Probe(data)
	if err != nil || info.Format != "avif" || info.Frames != 4 || info.Width != 64 || info.Height != 48 {
		t.Fatalf("Probe = %+v, %v; want an AVIF of 4 frames, 64×48", info, err)
	}
	for _, f := range []variant.Format{variant.FormatJPEG, variant.FormatPNG} {
		_, img := run(t, data, variant.Spec{Width: 32, Format: f})
		if c := color.NRGBAModel.Convert(img.At(16, 12)).(color.NRGBA); c.R < 200 || c.G > 60 || c.B > 60 {
			t.Errorf("%s: the variant's centre is %v, want the first frame's red", f, c)
		}
	}
	// Cut short, it is damaged, not another format.
	if _, err := proc.Process(data[:len(data)/2], transform.Operation{Spec: resolved(variant.Spec{Format: variant.FormatJPEG}), Source: info}); !errors.Is(err, transform.ErrUnsupportedImage) {
		t.Errorf("Process of half the file = %v, want ErrUnsupportedImage", err)
	}
}

// TestAVIFCollection: an AVIF of several still images (top-level items,
// which libvips counts as pages) is a still image, its primary one, and
// not an animation that a stored variant would have to keep whole.
func TestAVIFCollection(t *testing.T) {
	data := fixture(t, "collection.avif")
	info, err := proc.Probe(data)
	if err != nil || info.Frames != 1 || info.Width != 64 || info.Height != 48 {
		t.Fatalf("Probe = %+v, %v; want one frame, the 64×48 primary image", info, err)
	}
	_, img := run(t, data, variant.Spec{Width: 32, Format: variant.FormatPNG})
	if c := color.NRGBAModel.Convert(img.At(16, 12)).(color.NRGBA); c.R < 200 || c.G > 60 {
		t.Errorf("the variant's centre is %v, want the primary image's red", c)
	}
}

// TestAVIFByAnyBrand: an AVIF is read whatever brand its ftyp box names
// first, as long as it lists avif; libvips took a first brand other than
// avif (miaf, MA1B) for no image at all.
func TestAVIFByAnyBrand(t *testing.T) {
	data := fixture(t, "p3.avif")
	for _, major := range []string{"avif", "miaf", "MA1B", "mif1"} {
		patched := append([]byte(nil), data...)
		copy(patched[8:12], major)
		info, err := proc.Probe(patched)
		if err != nil || info.Format != "avif" || info.Width != 256 || info.Height != 192 {
			t.Errorf("first brand %s: Probe = %+v, %v; want a 256×192 AVIF", major, info, err)
			continue
		}
		if out, _ := run(t, patched, variant.Spec{Width: 64, Format: variant.FormatPNG}); out.Width != 64 || out.Height != 48 {
			t.Errorf("first brand %s: %d×%d, want 64×48", major, out.Width, out.Height)
		}
	}
}

// FuzzHEIF: the ftyp and moov readers never panic, never read past the
// data and bound the frame count.
func FuzzHEIF(f *testing.F) {
	f.Add(fixture(f, "animated.avif"))
	f.Add(append(ftyp("avis", "avif"), sequence(false, 3, 3)...))
	f.Add(append(ftyp("mif1", "avif"), sequence(true, 5)...))
	grid := derivedFile{kind: "grid", rows: 2, cols: 3, canvasW: 700, canvasH: 500, statedW: 64, statedH: 64,
		tileSize: 256, tileConfig: []byte{0x81, 0, 0x0c, 0}, tileCoding: []byte("av1 payload")}
	f.Add(grid.bytes())
	grid.inIdat, grid.wide = true, true
	f.Add(grid.bytes())
	grid.kind = "iovl"
	f.Add(grid.bytes())
	f.Add(alphaFile([]byte{0x81, 0, 0x0c, 0}, []byte("av1 payload"), 64, 8192))
	f.Fuzz(func(t *testing.T, data []byte) {
		heifFormat(data)
		longestItemExtent(data)
		for _, d := range derivedImages(data) {
			if d.kind != "grid" && d.kind != "iovl" || d.kind == "grid" && (d.rows < 1 || d.rows > 256 || d.cols < 1 || d.cols > 256) {
				t.Fatalf("derived image %+v", d)
			}
			if d.tilesPastCanvas() && (d.tileW == 0 || d.rows*d.cols < 2 && d.width > 0 && d.height > 0) {
				t.Fatalf("a grid of one tile, or of tiles of no size, past its canvas: %+v", d)
			}
		}
		itemPastPrimary(data)
		if n := sequenceFrames(data); n < 0 || n > maxSequenceFrames {
			t.Fatalf("%d frames", n)
		}
		if samples, chunks := sequenceTables(data); samples < 0 || chunks < 0 {
			t.Fatalf("%d samples in %d chunks", samples, chunks)
		}
	})
}

// derivedFile is an AVIF whose primary item is a grid (or an overlay) of
// rows × cols tiles: its canvas, the size its ispe states, and every
// tile the same coded image (av1C and payload from an AVIF the encoder
// made, tileSize a side).
type derivedFile struct {
	kind                   string // "grid" or "iovl"
	rows, cols             int
	canvasW, canvasH       uint32
	statedW, statedH       uint32 // 0×0: no ispe for the derived item
	wide                   bool   // 32-bit canvas fields
	inIdat                 bool   // the derived item's data in idat (iloc version 1)
	tileSize               uint32
	tileConfig, tileCoding []byte
}

func (f derivedFile) bytes() []byte {
	be := binary.BigEndian
	full := func(typ string, version, flags byte, body ...[]byte) []byte {
		return box(typ, append([]byte{version, 0, 0, flags}, slices.Concat(body...)...))
	}
	n := f.rows * f.cols
	var desc []byte
	if f.kind == "grid" {
		desc = []byte{0, 0, byte(f.rows - 1), byte(f.cols - 1)}
	} else {
		desc = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	}
	if f.wide {
		desc[1] = 1
		desc = be.AppendUint32(be.AppendUint32(desc, f.canvasW), f.canvasH)
	} else {
		desc = be.AppendUint16(be.AppendUint16(desc, uint16(f.canvasW)), uint16(f.canvasH))
	}
	if f.kind == "iovl" {
		for range n { // every tile at the canvas's origin
			desc = append(desc, make([]byte, 4+4*int(desc[1]&1))...)
		}
	}
	infes := [][]byte{full("infe", 2, 0, []byte{0, 1, 0, 0}, []byte(f.kind), []byte{0})}
	dimg := be.AppendUint16(be.AppendUint16(nil, 1), uint16(n))
	ipma := be.AppendUint32(nil, uint32(1+n))
	if f.statedW != 0 {
		ipma = append(ipma, 0, 1, 1, 1)
	} else {
		ipma = append(ipma, 0, 1, 0)
	}
	for i := range n {
		id := uint16(2 + i)
		infes = append(infes, full("infe", 2, 1, be.AppendUint16(nil, id), []byte{0, 0}, []byte("av01"), []byte{0}))
		dimg = be.AppendUint16(dimg, id)
		ipma = append(be.AppendUint16(ipma, id), 2, 2, 0x80|3)
	}
	ipco := box("ipco", ispe(f.statedW, f.statedH), ispe(f.tileSize, f.tileSize), box("av1C", f.tileConfig))
	head := func(mdatAt int) []byte {
		// iloc version 1: 4-byte offsets and lengths, no base offset.
		var items []byte
		codingAt := mdatAt + 8
		descAt, method := uint32(mdatAt+8+len(f.tileCoding)), byte(0)
		if f.inIdat {
			descAt, method = 0, 1
		}
		items = be.AppendUint16(items, 1)
		items = append(items, 0, method, 0, 0, 0, 1)
		items = be.AppendUint32(be.AppendUint32(items, descAt), uint32(len(desc)))
		for i := range n {
			items = be.AppendUint16(items, uint16(2+i))
			items = append(items, 0, 0, 0, 0, 0, 1)
			items = be.AppendUint32(be.AppendUint32(items, uint32(codingAt)), uint32(len(f.tileCoding)))
		}
		iloc := full("iloc", 1, 0, []byte{0x44, 0x00}, be.AppendUint16(nil, uint16(1+n)), items)
		meta := [][]byte{full("hdlr", 0, 0, make([]byte, 4), []byte("pict"), make([]byte, 13)),
			full("pitm", 0, 0, []byte{0, 1}), iloc, full("iinf", 0, 0, be.AppendUint16(nil, uint16(1+n)), slices.Concat(infes...)),
			full("iref", 0, 0, box("dimg", dimg)), box("iprp", ipco, full("ipma", 0, 0, ipma))}
		if f.inIdat {
			meta = append(meta, box("idat", desc))
		}
		return append(ftyp("avif", "mif1", "miaf"), full("meta", 0, 0, slices.Concat(meta...))...)
	}
	mdat := box("mdat", f.tileCoding)
	if !f.inIdat {
		mdat = box("mdat", f.tileCoding, desc)
	}
	h := head(0)
	return append(head(len(h)), mdat...)
}

// avifTile is the av1C box body and the coded payload of an AVIF the
// encoder makes of a size × size photo.
func avifTile(t *testing.T, size int) (config, coding []byte) {
	t.Helper()
	out, _ := run(t, testimages.PNG(size, size), variant.Spec{Format: variant.FormatAVIF, Quality: 40})
	meta, _ := child(out.Data, "meta", true)
	primary, _ := primaryItem(meta)
	itemLocations(meta, func(id uint32, start, length uint64, inIdat bool) bool {
		if id == primary && !inIdat && start+length <= uint64(len(out.Data)) {
			coding = out.Data[start : start+length]
		}
		return coding == nil
	})
	if at := bytes.Index(out.Data, []byte("av1C")); at > 0 {
		config = out.Data[at+4 : at+8]
	}
	if config == nil || coding == nil {
		t.Fatal("no av1C or payload in the encoder's AVIF")
	}
	return config, coding
}

// TestDerivedImages: a grid or overlay whose canvas is larger than the
// image its ispe states is found, wherever its data lies and whatever its
// fields' width, and so is a grid with a column or row of tiles wholly
// outside its canvas; one that matches, its tiles covering it, is not.
func TestDerivedImages(t *testing.T) {
	base := derivedFile{kind: "grid", rows: 2, cols: 2, tileSize: 256, tileConfig: []byte{0x81, 0, 0x0c, 0}, tileCoding: []byte("av1 payload")}
	with := func(change func(*derivedFile)) []byte {
		f := base
		change(&f)
		return f.bytes()
	}
	stated := func(w, h uint32) func(*derivedFile) {
		return func(f *derivedFile) { f.canvasW, f.canvasH, f.statedW, f.statedH = w, h, w, h }
	}
	for _, c := range []struct {
		name              string
		data              []byte
		pastItsSize, past bool // pastItsSize, tilesPastCanvas
		w, h              uint32
	}{
		{"a grid as large as it states", with(stated(512, 512)), false, false, 512, 512},
		{"a grid cropping its tiles", with(stated(500, 400)), false, false, 500, 400},
		{"a grid larger than it states", with(func(f *derivedFile) { f.canvasW, f.canvasH, f.statedW, f.statedH = 512, 512, 64, 64 }), true, false, 512, 512},
		{"its data in idat", with(func(f *derivedFile) { f.canvasW, f.canvasH, f.statedW, f.statedH, f.inIdat = 512, 512, 64, 64, true }), true, false, 512, 512},
		{"32-bit fields", with(func(f *derivedFile) {
			f.canvasW, f.canvasH, f.statedW, f.statedH, f.wide = 100_000, 512, 512, 512, true
		}), true, false, 100_000, 512},
		{"no ispe", with(func(f *derivedFile) { f.canvasW, f.canvasH = 512, 512 }), true, false, 512, 512},
		{"a column of tiles outside the canvas", with(stated(256, 512)), false, true, 256, 512},
		{"a row of tiles outside the canvas", with(stated(512, 256)), false, true, 512, 256},
		{"the last column one pixel inside", with(stated(257, 257)), false, false, 257, 257},
		{"15×15 tiles for one tile's canvas", with(func(f *derivedFile) {
			f.rows, f.cols, f.canvasW, f.canvasH, f.statedW, f.statedH = 15, 15, 256, 256, 256, 256
		}), false, true, 256, 256},
		{"an overlay larger than it states", with(func(f *derivedFile) {
			f.kind, f.canvasW, f.canvasH, f.statedW, f.statedH = "iovl", 4000, 4000, 256, 256
		}), true, false, 4000, 4000},
		{"an overlay as large as it states", with(func(f *derivedFile) { f.kind, f.canvasW, f.canvasH, f.statedW, f.statedH = "iovl", 256, 256, 256, 256 }), false, false, 256, 256},
	} {
		images := derivedImages(c.data)
		if len(images) != 1 {
			t.Errorf("%s: %d derived images, want 1", c.name, len(images))
			continue
		}
		d := images[0]
		if d.width != c.w || d.height != c.h || d.pastItsSize() != c.pastItsSize || d.tilesPastCanvas() != c.past {
			t.Errorf("%s: %+v, past its size %v, tiles past its canvas %v; want %d×%d, %v, %v", c.name, d, d.pastItsSize(), d.tilesPastCanvas(), c.w, c.h, c.pastItsSize, c.past)
		}
	}
	for name, data := range map[string][]byte{
		"a still image":         fixture(t, "p3.avif"),
		"cut inside its iloc":   with(stated(512, 512))[:200],
		"an animation's frames": fixture(t, "animated.avif"),
	} {
		if images := derivedImages(data); len(images) != 0 {
			t.Errorf("%s: %+v, want no derived image", name, images)
		}
	}
}

// TestGridPastItsSize: an AVIF stating a small image whose grid is large
// is refused from its header, as undecodable. libheif decoded the whole
// grid before refusing the mismatch: a 10 KB file stating 64×64 whose
// grid of 15×15 tiles was 15360×15360 took 426 MB of RSS and a second,
// and three at once took a server's peak RSS from 37 to 856 MB, past its
// 768 MiB budget, which had reserved memory for 64×64. A grid as large
// as it states is an image like any other.
func TestGridPastItsSize(t *testing.T) {
	config, coding := avifTile(t, 256)
	grid := derivedFile{kind: "grid", rows: 2, cols: 2, tileSize: 256, tileConfig: config, tileCoding: coding,
		canvasW: 512, canvasH: 384, statedW: 512, statedH: 384}
	out, img := run(t, grid.bytes(), variant.Spec{Width: 128, Format: variant.FormatPNG})
	if out.Width != 128 || out.Height != 96 || img == nil {
		t.Fatalf("a 2×2 grid as large as it states: %d×%d, want 128×96", out.Width, out.Height)
	}

	bomb := grid
	bomb.statedW, bomb.statedH = 64, 64
	_, err := proc.Probe(bomb.bytes())
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "512×384") || !strings.Contains(err.Error(), "64×64") {
		t.Errorf("a grid of 512×384 stating 64×64: Probe = %v, want ErrUnsupportedImage naming both sizes", err)
	}

	// A grid whose last column lies wholly outside its canvas: libheif
	// decoded every tile (15×15 tiles of 1024 px for a 1024×1024 canvas:
	// 225 tile decodes) and composed what fell inside.
	wasted := grid
	wasted.canvasW, wasted.statedW = 256, 256
	_, err = proc.Probe(wasted.bytes())
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "outside its 256×384 canvas") {
		t.Errorf("a grid of 2×2 tiles of 256 px on a 256×384 canvas: Probe = %v, want ErrUnsupportedImage naming the canvas", err)
	}
}

// alphaFile is an AVIF of an image imageSide a side whose alpha plane
// (an auxiliary image, auxl) states alphaSide a side; both are the same
// coded image (av1C and payload).
func alphaFile(config, coding []byte, imageSide, alphaSide uint32) []byte {
	be := binary.BigEndian
	full := func(typ string, body ...[]byte) []byte {
		return box(typ, append([]byte{0, 0, 0, 0}, slices.Concat(body...)...))
	}
	infe := func(id byte) []byte {
		return box("infe", []byte{2, 0, 0, 0, 0, id, 0, 0}, []byte("av01\x00"))
	}
	ipco := box("ipco", ispe(imageSide, imageSide), box("av1C", config), full("pixi", []byte{3, 8, 8, 8}),
		ispe(alphaSide, alphaSide), full("auxC", []byte("urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\x00")), full("pixi", []byte{1, 8}))
	ipma := full("ipma", be.AppendUint32(nil, 2), []byte{0, 1, 3, 1, 0x82, 3}, []byte{0, 2, 4, 4, 0x82, 0x85, 6})
	head := func(mdatAt int) []byte {
		at := uint32(mdatAt + 8)
		items := []byte{0, 1, 0, 0, 0, 1}
		items = be.AppendUint32(be.AppendUint32(items, at), uint32(len(coding)))
		items = append(items, 0, 2, 0, 0, 0, 1)
		items = be.AppendUint32(be.AppendUint32(items, at), uint32(len(coding)))
		meta := slices.Concat(full("hdlr", make([]byte, 4), []byte("pict"), make([]byte, 13)), full("pitm", []byte{0, 1}),
			full("iloc", []byte{0x44, 0, 0, 2}, items), full("iinf", []byte{0, 2}, infe(1), infe(2)),
			full("iref", box("auxl", []byte{0, 2, 0, 1, 0, 1})), box("iprp", ipco, ipma))
		return append(ftyp("avif", "mif1", "miaf"), full("meta", meta)...)
	}
	h := head(0)
	return append(head(len(h)), box("mdat", coding)...)
}

// TestItemPastPrimary: an item stating a larger image than the primary's
// is found, whatever it is; items as large or smaller are not.
func TestItemPastPrimary(t *testing.T) {
	config, coding := []byte{0x81, 0, 0x0c, 0}, []byte("av1 payload")
	grid := derivedFile{kind: "grid", rows: 2, cols: 2, tileSize: 256, tileConfig: config, tileCoding: coding,
		canvasW: 512, canvasH: 512, statedW: 512, statedH: 512}
	padded := grid
	padded.rows, padded.cols, padded.tileSize = 1, 1, 600
	for _, c := range []struct {
		name          string
		data          []byte
		found         bool
		item, primary [2]uint32
	}{
		{"an alpha plane the image's size", alphaFile(config, coding, 64, 64), false, [2]uint32{}, [2]uint32{}},
		{"an alpha plane larger than the image", alphaFile(config, coding, 64, 8192), true, [2]uint32{8192, 8192}, [2]uint32{64, 64}},
		{"an alpha plane smaller than the image", alphaFile(config, coding, 64, 32), false, [2]uint32{}, [2]uint32{}},
		{"a grid's tiles", grid.bytes(), false, [2]uint32{}, [2]uint32{}},
		{"a grid's one tile larger than its canvas", padded.bytes(), true, [2]uint32{600, 600}, [2]uint32{512, 512}},
		{"a still image", fixture(t, "p3.avif"), false, [2]uint32{}, [2]uint32{}},
		{"a collection of stills", fixture(t, "collection.avif"), false, [2]uint32{}, [2]uint32{}},
		{"an animation", fixture(t, "animated.avif"), false, [2]uint32{}, [2]uint32{}},
	} {
		item, primary, found := itemPastPrimary(c.data)
		if found != c.found || found && (item != c.item || primary != c.primary) {
			t.Errorf("%s: %v past %v, %v; want %v past %v, %v", c.name, item, primary, found, c.item, c.primary, c.found)
		}
	}
}

// TestAlphaPastTheImage: an AVIF whose alpha plane is larger than its
// image is refused from its header, as undecodable. Decoding the image
// decoded the alpha plane whole: a 1.3 KB file stating 64×64 with an
// 8192×8192 alpha plane took ~1 GB of RSS and 4.4 s, two at once took a
// server's peak RSS from 48 MB to 1.9 GB, past its 768 MiB budget, and
// both answered a 64×64 variant. An alpha plane the image's size is read
// as the image's alpha.
func TestAlphaPastTheImage(t *testing.T) {
	config, coding := avifTile(t, 64)
	if _, img := run(t, alphaFile(config, coding, 64, 64), variant.Spec{Format: variant.FormatPNG}); img.Bounds().Dx() != 64 {
		t.Fatalf("an alpha plane the image's size: %v, want a 64×64 image", img.Bounds())
	}
	_, err := proc.Probe(alphaFile(config, coding, 64, 8192))
	if !errors.Is(err, transform.ErrUnsupportedImage) || !strings.Contains(err.Error(), "8192×8192") || !strings.Contains(err.Error(), "64×64") {
		t.Errorf("an 8192×8192 alpha plane on a 64×64 image: Probe = %v, want ErrUnsupportedImage naming both sizes", err)
	}
}
