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
	"math"
	"os/exec"
	"path/filepath"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

const w, h = 256, 192

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

// toP3 converts linear light from BT.709's primaries to Display P3's.
var toP3 = [9]float64{0.8225, 0.1774, 0, 0.0332, 0.9669, 0, 0.0171, 0.0724, 0.9108}

// p3 is PhotoImage coded on Display P3 with sRGB's transfer.
func p3() image.Image {
	src := testimages.PhotoImage(w, h)
	out := image.NewNRGBA64(src.Bounds())
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := src.RGBAAt(x, y)
			l := [3]float64{linear(float64(c.R) / 255), linear(float64(c.G) / 255), linear(float64(c.B) / 255)}
			var v [3]uint16
			for i := range v {
				v[i] = uint16(math.Round(65535 * srgb(toP3[3*i]*l[0]+toP3[3*i+1]*l[1]+toP3[3*i+2]*l[2])))
			}
			out.SetNRGBA64(x, y, color.NRGBA64{v[0], v[1], v[2], 65535})
		}
	}
	return out
}

func write(name string, img image.Image, cicp, depth string) {
	tmp := testimages.TempPNG(name, img)
	dst := filepath.Join("server", "internal", "imaging", "testdata", name+".avif")
	cmd := exec.Command("avifenc", "-d", depth, "-y", "444", "--cicp", cicp, "-s", "6", "--min", "0", "--max", "8", tmp, dst)
	if msg, err := cmd.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("%v\n%s", err, msg))
	}
}

func main() {
	write("pq", testimages.HDRImage(w, h, testimages.PQ, false), "9/16/9", "10")
	write("hlg", testimages.HDRImage(w, h, testimages.HLG, false), "9/18/9", "10")
	write("pq-alpha", testimages.HDRImage(w, h, testimages.PQ, true), "9/16/9", "10")
	write("p3", p3(), "12/13/1", "8")
}
