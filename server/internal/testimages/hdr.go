package testimages

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Transfer codes a pixel's linear display light (cd/m², BT.2020's
// primaries) as an HDR signal, 0–1 a channel.
type Transfer func(nits [3]float64) [3]float64

// PQ is SMPTE ST 2084's inverse EOTF, a channel at a time.
func PQ(nits [3]float64) [3]float64 {
	const m1, m2 = 2610.0 / 16384, 2523.0 / 4096 * 128
	const c1, c2, c3 = 3424.0 / 4096, 2413.0 / 4096 * 32, 2392.0 / 4096 * 32
	var v [3]float64
	for i, n := range nits {
		p := math.Pow(math.Max(n, 0)/10000, m1)
		v[i] = math.Pow((c1+c2*p)/(1+c3*p), m2)
	}
	return v
}

// HLG codes display light for a 1000 cd/m² display: BT.2100's inverse
// OOTF (system gamma 1.2, on the pixel's luminance, so that its colour
// keeps its hue and saturation), then ARIB STD-B67's OETF a channel at a
// time.
func HLG(nits [3]float64) [3]float64 {
	const a, b, c = 0.17883277, 1 - 4*0.17883277, 0.55991073
	const peak, gamma = 1000.0, 1.2
	lum := (0.2627*nits[0] + 0.6780*nits[1] + 0.0593*nits[2]) / peak
	var v [3]float64
	for i, n := range nits {
		e := 0.0
		if lum > 0 {
			e = math.Max(n, 0) / peak * math.Pow(lum, (1-gamma)/gamma)
		}
		if e <= 1.0/12 {
			v[i] = math.Sqrt(3 * e)
		} else {
			v[i] = a*math.Log(12*e-b) + c
		}
	}
	return v
}

// HDRPatch is the square at the centre of HDRImage lit at 1000 cd/m².
func HDRPatch(w, h int) image.Rectangle {
	const side = 32
	return image.Rect((w-side)/2, (h-side)/2, (w+side)/2, (h+side)/2)
}

// bt709ToBT2020 converts linear light between the primaries.
var bt709ToBT2020 = [9]float64{0.6274, 0.3293, 0.0433, 0.0691, 0.9195, 0.0114, 0.0164, 0.0880, 0.8956}

// HDRImage is PhotoImage(w, h) coded by transfer on BT.2020's primaries,
// its white at BT.2408's 203 cd/m² (SDR white), with HDRPatch a 1000
// cd/m² white, 16 bits a channel; alphaRamp makes alpha rise from 0 at the
// left edge to opaque at the right.
func HDRImage(w, h int, transfer Transfer, alphaRamp bool) *image.NRGBA64 {
	src := PhotoImage(w, h)
	patch := HDRPatch(w, h)
	out := image.NewNRGBA64(src.Bounds())
	for y := range h {
		for x := range w {
			c := src.RGBAAt(x, y)
			l := [3]float64{srgbLinear(c.R), srgbLinear(c.G), srgbLinear(c.B)}
			white := 203.0
			if image.Pt(x, y).In(patch) {
				l, white = [3]float64{1, 1, 1}, 1000
			}
			m := bt709ToBT2020
			var nits [3]float64
			for i := range nits {
				nits[i] = (m[3*i]*l[0] + m[3*i+1]*l[1] + m[3*i+2]*l[2]) * white
			}
			var v [3]uint16
			for i, coded := range transfer(nits) {
				v[i] = uint16(math.Round(65535 * coded))
			}
			a := uint16(65535)
			if alphaRamp {
				a = uint16(65535 * x / (w - 1))
			}
			out.SetNRGBA64(x, y, color.NRGBA64{v[0], v[1], v[2], a})
		}
	}
	return out
}

func srgbLinear(v uint8) float64 {
	f := float64(v) / 255
	if f <= 0.04045 {
		return f / 12.92
	}
	return math.Pow((f+0.055)/1.055, 2.4)
}

// WithCICP is a PNG with a cICP chunk (PNG's third edition: H.273 code
// points for its primaries and transfer, RGB, full range) after IHDR.
func WithCICP(pngData []byte, primaries, transfer byte) []byte {
	return withChunkAfterIHDR(pngData, "cICP", []byte{primaries, transfer, 0, 1})
}

// WithICCP is a PNG with an iCCP chunk holding profile after IHDR. The
// profile is stored, not compressed: libpng 1.6.4x drops an iCCP chunk of
// fewer than 92 bytes as too short, and a small profile of zeros would be.
func WithICCP(pngData, profile []byte) []byte {
	return withChunkAfterIHDR(pngData, "iCCP", append([]byte("icc\x00\x00"), zlibStream(profile, zlib.NoCompression)...))
}

// zlibStream is data as a zlib stream at the given compression level.
func zlibStream(data []byte, level int) []byte {
	var z bytes.Buffer
	w, err := zlib.NewWriterLevel(&z, level)
	if err != nil {
		panic(err)
	}
	if _, err := w.Write(data); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return z.Bytes()
}

// WithText is a PNG with a text chunk after IHDR, its keyword "Comment":
// typ "tEXt" stores text as it is, "zTXt" compresses it, "iTXt" compresses
// it when compressed is true (with an empty language tag and translated
// keyword).
func WithText(pngData []byte, typ string, compressed bool, text []byte) []byte {
	if compressed {
		text = zlibStream(text, zlib.BestCompression)
	}
	var head []byte
	switch {
	case typ == "tEXt" && !compressed:
		head = []byte("Comment\x00")
	case typ == "zTXt" && compressed:
		head = []byte("Comment\x00\x00")
	case typ == "iTXt":
		head = []byte("Comment\x00\x00\x00\x00\x00")
		if compressed {
			head[len("Comment")+1] = 1
		}
	default:
		panic("WithText: a " + typ + " chunk cannot hold that text")
	}
	return withChunkAfterIHDR(pngData, typ, append(head, text...))
}

func withChunkAfterIHDR(pngData []byte, typ string, data []byte) []byte {
	const afterIHDR = 8 + 8 + 13 + 4 // signature, IHDR's length and type, its data, its CRC
	var chunk bytes.Buffer
	writeChunk(&chunk, typ, data)
	out := append([]byte{}, pngData[:afterIHDR]...)
	out = append(out, chunk.Bytes()...)
	return append(out, pngData[afterIHDR:]...)
}

// DescribedProfile is the least an ICC profile (version 2, an RGB display)
// can be: a valid header and a description tag, no colour tags. A decoder
// carries it, and what reads its description takes it for what it names.
func DescribedProfile(description string) []byte {
	desc := append([]byte("desc\x00\x00\x00\x00"), binary.BigEndian.AppendUint32(nil, uint32(len(description)+1))...)
	desc = append(append(desc, description...), 0)
	desc = append(desc, make([]byte, 4+4+2+1+67)...) // no Unicode or ScriptCode text
	for len(desc)%4 != 0 {
		desc = append(desc, 0)
	}
	const tagsAt = 128 + 4 + 12
	p := make([]byte, tagsAt, tagsAt+len(desc))
	binary.BigEndian.PutUint32(p[0:], uint32(tagsAt+len(desc)))
	binary.BigEndian.PutUint32(p[8:], 0x02100000)
	copy(p[12:], "mntrRGB XYZ ")
	copy(p[36:], "acsp")
	// The PCS illuminant, D50.
	binary.BigEndian.PutUint32(p[68:], 0xF6D6)
	binary.BigEndian.PutUint32(p[72:], 0x10000)
	binary.BigEndian.PutUint32(p[76:], 0xD32D)
	binary.BigEndian.PutUint32(p[128:], 1)
	copy(p[132:], "desc")
	binary.BigEndian.PutUint32(p[136:], tagsAt)
	binary.BigEndian.PutUint32(p[140:], uint32(len(desc)))
	return append(p, desc...)
}

// HDRPNG is HDRImage(w, h, PQ, false) as a 16-bit PNG stating BT.2020 and
// PQ in cICP.
func HDRPNG(w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, HDRImage(w, h, PQ, false)); err != nil {
		panic(err)
	}
	return WithCICP(buf.Bytes(), 9, 16)
}
