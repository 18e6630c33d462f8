package imaging

import (
	"encoding/binary"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

// box builds an ISOBMFF box.
func box(typ string, body ...[]byte) []byte {
	var b []byte
	for _, part := range body {
		b = append(b, part...)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(8+len(b)))
	return append(append(out, typ...), b...)
}

func colr(primaries, transfer uint16) []byte {
	b := []byte("nclx")
	b = binary.BigEndian.AppendUint16(b, primaries)
	b = binary.BigEndian.AppendUint16(b, transfer)
	b = binary.BigEndian.AppendUint16(b, 9)
	return box("colr", append(b, 0x80))
}

// heifWith is an AVIF header whose primary item (ID 1) has the properties
// ipma lists for it (1-based indices into props); item 2 (an alpha or gain
// map, say) has the others.
func heifWith(props [][]byte, primaryProps []byte) []byte {
	ipma := []byte{0, 0, 0, 0, 0, 0, 0, 2, 0, 1, byte(len(primaryProps))}
	ipma = append(ipma, primaryProps...)
	var others []byte
	for i := range props {
		others = append(others, byte(i+1))
	}
	ipma = append(append(ipma, 0, 2, byte(len(others))), others...)
	return append(box("ftyp", []byte("avif\x00\x00\x00\x00avifmif1")),
		box("meta", []byte{0, 0, 0, 0},
			box("pitm", []byte{0, 0, 0, 0, 0, 1}),
			box("iprp", box("ipco", props...), box("ipma", ipma)))...)
}

func TestNCLX(t *testing.T) {
	ispe := box("ispe", make([]byte, 12))
	pq2020, p3 := colr(primariesBT2020, transferPQ), colr(primariesP3, 13)
	fixture := fixture(t, "pq.avif")
	for _, c := range []struct {
		name string
		data []byte
		want cicp
		ok   bool
	}{
		{"avifenc's PQ fixture", fixture, cicp{primariesBT2020, transferPQ}, true},
		{"the primary item's colour", heifWith([][]byte{ispe, p3, pq2020}, []byte{1, 3}), cicp{primariesBT2020, transferPQ}, true},
		{"an essential association", heifWith([][]byte{ispe, p3, pq2020}, []byte{1, 0x80 | 3}), cicp{primariesBT2020, transferPQ}, true},
		{"no association: the first nclx", heifWith([][]byte{ispe, p3, pq2020}, []byte{1}), cicp{primariesP3, 13}, true},
		{"an ICC profile only", heifWith([][]byte{ispe, box("colr", []byte("prof\x00\x00"))}, []byte{1, 2}), cicp{}, false},
		{"no colour", heifWith([][]byte{ispe}, []byte{1}), cicp{}, false},
		{"a JPEG", []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F'}, cicp{}, false},
		{"a box past the end", append(box("ftyp", []byte("avif")), 0, 0, 1, 0, 'm', 'e', 't', 'a', 0, 0, 0, 0), cicp{}, false},
		{"empty", nil, cicp{}, false},
	} {
		got, ok := nclx(c.data)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: nclx = %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	// A header of a million empty properties: read up to the last index
	// ipma can name, and no further.
	many := make([]byte, 0, 8_000_000)
	for range 1_000_000 {
		many = append(many, box("free")...)
	}
	if c, ok := nclx(heifWith([][]byte{many, colr(primariesBT2020, transferPQ)}, []byte{1})); ok {
		t.Errorf("nclx found %+v past the last index ipma can name", c)
	}
	if !(cicp{primariesBT709, transferHLG}).converted() || (cicp{primariesBT709, 13}).converted() || (cicp{2, 2}).converted() {
		t.Error("converted: HDR or wide gamut only")
	}
}

// TestPNGCICP: a PNG's cICP chunk, before its image data.
func TestPNGCICP(t *testing.T) {
	plain := testimages.OneBitPNG(8, 8)
	for _, c := range []struct {
		name string
		data []byte
		want cicp
		ok   bool
	}{
		{"PQ on BT.2020", testimages.WithCICP(plain, 9, 16), cicp{9, 16}, true},
		{"HLG", testimages.WithCICP(plain, 9, 18), cicp{9, 18}, true},
		{"none", plain, cicp{}, false},
		{"cut inside the chunk", testimages.WithCICP(plain, 9, 16)[:8+25+10], cicp{}, false},
		{"the signature alone", plain[:8], cicp{}, false},
	} {
		got, ok := coding(c.data)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: coding = %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// FuzzCoding: the header readers never panic and never read past the data.
func FuzzCoding(f *testing.F) {
	f.Add(testimages.WithCICP(testimages.OneBitPNG(8, 8), 9, 16))
	f.Add(fixture(f, "pq.avif"))
	f.Add(heifWith([][]byte{box("ispe", make([]byte, 12)), colr(9, 16)}, []byte{1, 2}))
	f.Fuzz(func(t *testing.T, data []byte) {
		coding(data)
	})
}
