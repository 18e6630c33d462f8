package testimages

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Transfer codes linear display light (cd/m²) as an HDR signal, 0–1.
type Transfer func(nits float64) float64

// PQ is SMPTE ST 2084's inverse EOTF.
func PQ(nits float64) float64 {
	const m1, m2 = 2610.0 / 16384, 2523.0 / 4096 * 128
	const c1, c2, c3 = 3424.0 / 4096, 2413.0 / 4096 * 32, 2392.0 / 4096 * 32
	p := math.Pow(math.Max(nits, 0)/10000, m1)
	return math.Pow((c1+c2*p)/(1+c3*p), m2)
}

// HLG codes display light for a 1000 cd/m² display (system gamma 1.2) with
// ARIB STD-B67's OETF.
func HLG(nits float64) float64 {
	const a, b, c = 0.17883277, 1 - 4*0.17883277, 0.55991073
	e := math.Pow(math.Max(nits, 0)/1000, 1/1.2)
	if e <= 1.0/12 {
		return math.Sqrt(3 * e)
	}
	return a*math.Log(12*e-b) + c
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
			var v [3]uint16
			for i := range v {
				lin := m[3*i]*l[0] + m[3*i+1]*l[1] + m[3*i+2]*l[2]
				v[i] = uint16(math.Round(65535 * transfer(lin*white)))
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
	const afterIHDR = 8 + 8 + 13 + 4 // signature, IHDR's length and type, its data, its CRC
	var chunk bytes.Buffer
	writeChunk(&chunk, "cICP", []byte{primaries, transfer, 0, 1})
	out := append([]byte{}, pngData[:afterIHDR]...)
	out = append(out, chunk.Bytes()...)
	return append(out, pngData[afterIHDR:]...)
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
