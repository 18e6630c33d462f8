// Package quality measures how close an encoded image stays to its source:
// SSIM on luma (Wang, Bovik, Sheikh, Simoncelli 2004: 11×11 Gaussian
// window, σ = 1.5, K1 = 0.01, K2 = 0.03) and its multi-scale form (MS-SSIM,
// five scales with the paper's weights). It also estimates a JPEG's encoder
// quality from its quantisation tables. Pure Go: planes come from the
// imaging package, which decodes with libvips.
package quality

import (
	"errors"
	"math"
)

// Plane is an 8-bit luma image.
type Plane struct {
	Width, Height int
	Pix           []uint8 // row-major, len Width*Height
}

// ErrSize is returned for planes of different or degenerate sizes.
var ErrSize = errors.New("planes differ in size or are too small")

const (
	c1 = (0.01 * 255) * (0.01 * 255)
	c2 = (0.03 * 255) * (0.03 * 255)
)

var gauss = func() []float64 {
	const radius, sigma = 5, 1.5
	k := make([]float64, 2*radius+1)
	var sum float64
	for i := range k {
		x := float64(i - radius)
		k[i] = math.Exp(-x * x / (2 * sigma * sigma))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	return k
}()

// SSIM returns the mean structural similarity of b to a, in [-1, 1]; 1
// means identical. Windows are clamped at the borders.
func SSIM(a, b Plane) (float64, error) {
	l, cs, err := ssimTerms(a, b)
	if err != nil {
		return 0, err
	}
	var sum float64
	for i := range l {
		sum += l[i] * cs[i]
	}
	return sum / float64(len(l)), nil
}

// msWeights are the MS-SSIM exponents of the five scales, finest first.
var msWeights = []float64{0.0448, 0.2856, 0.3001, 0.2363, 0.1333}

// MSSSIM is multi-scale SSIM: contrast-structure at every scale, luminance
// at the coarsest, combined with the published weights. Scales stop early
// for small images (at least 11 pixels a side); the weights are then
// renormalised.
func MSSSIM(a, b Plane) (float64, error) {
	if a.Width != b.Width || a.Height != b.Height || a.Width < 11 || a.Height < 11 {
		return 0, ErrSize
	}
	var terms []float64
	var weights []float64
	for s := 0; s < len(msWeights); s++ {
		l, cs, err := ssimTerms(a, b)
		if err != nil {
			return 0, err
		}
		last := s == len(msWeights)-1 || a.Width/2 < 11 || a.Height/2 < 11
		var mean float64
		for i := range cs {
			if last {
				mean += l[i] * cs[i]
			} else {
				mean += cs[i]
			}
		}
		mean /= float64(len(cs))
		terms = append(terms, math.Max(mean, 0))
		weights = append(weights, msWeights[s])
		if last {
			break
		}
		a, b = half(a), half(b)
	}
	var wsum float64
	for _, w := range weights {
		wsum += w
	}
	score := 1.0
	for i, t := range terms {
		score *= math.Pow(t, weights[i]/wsum)
	}
	return score, nil
}

// ssimTerms returns, per pixel, the luminance term and the
// contrast-structure term of SSIM.
func ssimTerms(a, b Plane) (l, cs []float64, err error) {
	if a.Width != b.Width || a.Height != b.Height || a.Width < 1 || a.Height < 1 ||
		len(a.Pix) != a.Width*a.Height || len(b.Pix) != b.Width*b.Height {
		return nil, nil, ErrSize
	}
	n := a.Width * a.Height
	x, y := make([]float64, n), make([]float64, n)
	xx, yy, xy := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range n {
		xv, yv := float64(a.Pix[i]), float64(b.Pix[i])
		x[i], y[i], xx[i], yy[i], xy[i] = xv, yv, xv*xv, yv*yv, xv*yv
	}
	tmp := make([]float64, n)
	for _, p := range [][]float64{x, y, xx, yy, xy} {
		blur(p, tmp, a.Width, a.Height)
	}
	l, cs = make([]float64, n), make([]float64, n)
	for i := range n {
		mx, my := x[i], y[i]
		vx, vy, cov := xx[i]-mx*mx, yy[i]-my*my, xy[i]-mx*my
		l[i] = (2*mx*my + c1) / (mx*mx + my*my + c1)
		cs[i] = (2*cov + c2) / (vx + vy + c2)
	}
	return l, cs, nil
}

// blur applies the separable Gaussian in place, clamping at the borders.
func blur(p, tmp []float64, w, h int) {
	r := len(gauss) / 2
	for yy := range h {
		row := p[yy*w : (yy+1)*w]
		out := tmp[yy*w : (yy+1)*w]
		for xx := range w {
			var s float64
			for k, g := range gauss {
				xi := min(max(xx+k-r, 0), w-1)
				s += g * row[xi]
			}
			out[xx] = s
		}
	}
	for xx := range w {
		for yy := range h {
			var s float64
			for k, g := range gauss {
				yi := min(max(yy+k-r, 0), h-1)
				s += g * tmp[yi*w+xx]
			}
			p[yy*w+xx] = s
		}
	}
}

// half downsamples a plane by two with a 2×2 box.
func half(p Plane) Plane {
	w, h := p.Width/2, p.Height/2
	out := Plane{Width: w, Height: h, Pix: make([]uint8, w*h)}
	for y := range h {
		for x := range w {
			s := int(p.Pix[2*y*p.Width+2*x]) + int(p.Pix[2*y*p.Width+2*x+1]) +
				int(p.Pix[(2*y+1)*p.Width+2*x]) + int(p.Pix[(2*y+1)*p.Width+2*x+1])
			out.Pix[y*w+x] = uint8((s + 2) / 4)
		}
	}
	return out
}
