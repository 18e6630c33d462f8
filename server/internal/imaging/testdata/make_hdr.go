//go:build ignore

// make_hdr writes the HDR and wide-gamut AVIF fixtures: testimages'
// PhotoImage(256, 192) coded as PQ and HLG on BT.2020 (SDR white at BT.2408's
// 203 cd/m², and a 32 px patch of 1000 cd/m² white at the centre), as PQ
// with an alpha ramp, and as Display P3 with sRGB's transfer. It needs
// avifenc (Debian's libavif-bin):
//
//	go run ./server/internal/imaging/testdata/make_hdr.go
package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

const w, h, patch = 256, 192, 32

func linear(v float64) float64 {
	if v <= 0.04045 {
		return v / 12.92
	}
	return math.Pow((v+0.055)/1.055, 2.4)
}

func srgb(v float64) float64 {
	if v <= 0.0031308 {
		return v * 12.92
	}
	return 1.055*math.Pow(v, 1/2.4) - 0.055
}

// pq is SMPTE ST 2084's inverse EOTF of nits.
func pq(nits float64) float64 {
	const m1, m2 = 2610.0 / 16384, 2523.0 / 4096 * 128
	const c1, c2, c3 = 3424.0 / 4096, 2413.0 / 4096 * 32, 2392.0 / 4096 * 32
	p := math.Pow(math.Max(nits, 0)/10000, m1)
	return math.Pow((c1+c2*p)/(1+c3*p), m2)
}

// hlg codes display nits (1000 cd/m² peak, system gamma 1.2).
func hlg(nits float64) float64 {
	const a, b, c = 0.17883277, 1 - 4*0.17883277, 0.55991073
	e := math.Pow(math.Max(nits, 0)/1000, 1/1.2)
	if e <= 1.0/12 {
		return math.Sqrt(3 * e)
	}
	return a*math.Log(12*e-b) + c
}

var (
	toBT2020 = [9]float64{0.6274, 0.3293, 0.0433, 0.0691, 0.9195, 0.0114, 0.0164, 0.0880, 0.8956}
	toP3     = [9]float64{0.8225, 0.1774, 0, 0.0332, 0.9669, 0, 0.0171, 0.0724, 0.9108}
)

func write(name string, code func(linear709 [3]float64, highlight bool) [3]float64, alpha bool, cicp string, depth string) {
	src := testimages.PhotoImage(w, h)
	out := image.NewNRGBA64(src.Bounds())
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := src.RGBAAt(x, y)
			l := [3]float64{linear(float64(c.R) / 255), linear(float64(c.G) / 255), linear(float64(c.B) / 255)}
			highlight := x >= (w-patch)/2 && x < (w+patch)/2 && y >= (h-patch)/2 && y < (h+patch)/2
			v := code(l, highlight)
			a := uint16(65535)
			if alpha {
				a = uint16(65535 * x / (w - 1))
			}
			out.SetNRGBA64(x, y, color.NRGBA64{uint16(math.Round(65535 * v[0])), uint16(math.Round(65535 * v[1])), uint16(math.Round(65535 * v[2])), a})
		}
	}
	tmp := filepath.Join(os.TempDir(), name+".png")
	f, err := os.Create(tmp)
	if err != nil {
		panic(err)
	}
	if err := png.Encode(f, out); err != nil {
		panic(err)
	}
	f.Close()
	dst := filepath.Join("server", "internal", "imaging", "testdata", name+".avif")
	cmd := exec.Command("avifenc", "-d", depth, "-y", "444", "--cicp", cicp, "-s", "6", "--min", "0", "--max", "8", tmp, dst)
	if msg, err := cmd.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("%v\n%s", err, msg))
	}
}

func mul(m [9]float64, l [3]float64) [3]float64 {
	return [3]float64{m[0]*l[0] + m[1]*l[1] + m[2]*l[2], m[3]*l[0] + m[4]*l[1] + m[5]*l[2], m[6]*l[0] + m[7]*l[1] + m[8]*l[2]}
}

func hdr(transfer func(nits float64) float64) func([3]float64, bool) [3]float64 {
	return func(l [3]float64, highlight bool) [3]float64 {
		white := 203.0
		if highlight {
			l, white = [3]float64{1, 1, 1}, 1000
		}
		v := mul(toBT2020, l)
		return [3]float64{transfer(v[0] * white), transfer(v[1] * white), transfer(v[2] * white)}
	}
}

func main() {
	write("pq", hdr(pq), false, "9/16/9", "10")
	write("hlg", hdr(hlg), false, "9/18/9", "10")
	write("pq-alpha", hdr(pq), true, "9/16/9", "10")
	write("p3", func(l [3]float64, _ bool) [3]float64 {
		v := mul(toP3, l)
		return [3]float64{srgb(v[0]), srgb(v[1]), srgb(v[2])}
	}, false, "12/13/1", "8")
}
