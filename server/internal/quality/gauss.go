package quality

import (
	"math"
	"runtime"

	"golang.org/x/sys/cpu"
)

// The reference blurs with libjxl's FastGaussian, not with a Gaussian
// kernel: Charalampidis' recursive approximation (2016), three
// second-order terms, each a resonator fed the sum of the two pixels
// radius+1 taps either side of a sliding window, so that a pixel costs the
// same at any σ. Its impulse response is within 0.002 of the Gaussian's
// (σ 1.5: radius 5, and nothing beyond), but how it rounds matters as much
// as its shape: at high quality the SSIM term of a smooth area measures
// little but the float32 rounding left in σ² = blur(x²) − blur(x)², so a
// score only agrees with the reference's (within 0.1 rather than 1.5 at
// q95) when each step rounds as the reference's does: float32 fused
// multiply-adds in the same order, and rows in the reference's own
// four-pixel unrolling. blurRowsScalar and blurColsScalar are that
// arithmetic written out; the vector kernels (kernels_simd.go) run the
// same operations. On a CPU without fused multiply-add the reference runs
// its SSE4 code, which rounds each multiply-add twice, and so does madd.

// recursiveGauss holds the filter's coefficients for one σ, as the
// reference computes them (CreateRecursiveGaussian): per term k, n2 feeds
// the input in and d1 the previous output back; mulIn, mulPrev and
// mulPrev2 are the same recursion expanded over four outputs at once.
type recursiveGauss struct {
	radius                   int
	n2, d1                   [3]float32
	mulIn, mulPrev, mulPrev2 [3][4]float32
}

// refGauss is the blur of SSIMULACRA2: σ 1.5.
var refGauss = newRecursiveGauss(1.5)

func newRecursiveGauss(sigma float64) recursiveGauss {
	radius := math.Round(3.2795*sigma + 0.2546) // (57), "N"
	piDiv2r := math.Pi / (2 * radius)
	omega := [3]float64{piDiv2r, 3 * piDiv2r, 5 * piDiv2r}
	// (37) and (44), k = 1, 3, 5
	p1, p3, p5 := 1/math.Tan(0.5*omega[0]), -1/math.Tan(0.5*omega[1]), 1/math.Tan(0.5*omega[2])
	r1, r3, r5 := p1*p1/math.Sin(omega[0]), -p3*p3/math.Sin(omega[1]), p5*p5/math.Sin(omega[2])
	var rho [3]float64 // (50)
	for i := range rho {
		rho[i] = math.Exp(-0.5*sigma*sigma*omega[i]*omega[i]) / radius
	}
	d13, d35, d51 := p1*r3-r1*p3, p3*r5-r3*p5, p5*r1-r5*p1 // (52)
	zeta15, zeta35 := d35/d13, d51/d13
	a := invert3x3([9]float64{p1, p3, p5, r1, r3, r5, zeta15, zeta35, 1})                       // (56)
	gamma := [3]float64{1, radius*radius - sigma*sigma, zeta15*rho[0] + zeta35*rho[1] + rho[2]} // (55)
	g := recursiveGauss{radius: int(radius)}
	for i := range 3 {
		beta := a[3*i]*gamma[0] + a[3*i+1]*gamma[1] + a[3*i+2]*gamma[2] // (53)
		n2 := -beta * math.Cos(omega[i]*(radius+1))                     // (33)
		d1 := -2 * math.Cos(omega[i])
		d2 := d1 * d1
		g.n2[i], g.d1[i] = float32(n2), float32(d1)
		g.mulPrev[i] = [4]float32{float32(-d1), float32(d2 - 1), float32(-d2*d1 + 2*d1), float32(d2*d2 - 3*d2 + 1)}
		g.mulPrev2[i] = [4]float32{-1, float32(d1), float32(-d2 + 1), float32(d2*d1 - 2*d1)}
		g.mulIn[i] = [4]float32{float32(n2), float32(-d1 * n2), float32(d2*n2 - n2), float32(-d2*d1*n2 + 2*d1*n2)}
	}
	return g
}

// invert3x3 inverts a row-major 3×3 matrix (here never singular).
func invert3x3(m [9]float64) [9]float64 {
	inv := [9]float64{
		m[4]*m[8] - m[5]*m[7], m[2]*m[7] - m[1]*m[8], m[1]*m[5] - m[2]*m[4],
		m[5]*m[6] - m[3]*m[8], m[0]*m[8] - m[2]*m[6], m[2]*m[3] - m[0]*m[5],
		m[3]*m[7] - m[4]*m[6], m[1]*m[6] - m[0]*m[7], m[0]*m[4] - m[1]*m[3],
	}
	det := m[0]*inv[0] + m[1]*inv[3] + m[2]*inv[6]
	for i := range inv {
		inv[i] /= det
	}
	return inv
}

// fusedMultiplyAdd says whether this CPU has fused multiply-add, and so
// whether the reference, dispatching on the CPU as it does, rounds a
// multiply-add once (AVX2 and later, NEON) or twice (SSE4): madd follows.
var fusedMultiplyAdd = runtime.GOARCH == "arm64" || cpu.X86.HasFMA

// madd is a×b+c as the reference computes it on this CPU: rounded once
// where the CPU fuses (through float64, which holds a float32 product
// exactly; rounding twice can differ in the last bit, rarely), else
// twice (the conversion keeps a compiler from fusing it).
func madd(a, b, c float32) float32 {
	if fusedMultiplyAdd {
		return float32(math.FMA(float64(a), float64(b), float64(c)))
	}
	return float32(a*b) + c
}

// firstUnrolled is where the reference's rows start their four-output
// steps: the first multiple of four whose window lies inside the row.
func (g *recursiveGauss) firstUnrolled() int { return (g.radius + 1 + 3) &^ 3 }

// rowStep is one output of a row's recursion (n may be negative while the
// window enters the row: then nothing is written), its pixels outside the
// row counting as zero.
func (g *recursiveGauss) rowStep(row, out []float32, n int, prev, prev2 *[3]float32) {
	var sum float32
	if l := n - g.radius - 1; l >= 0 {
		sum = row[l]
	}
	if r := n + g.radius - 1; r < len(row) {
		sum += row[r]
	}
	var o [3]float32
	for k := range o {
		v := sum * g.mulIn[k][0]
		v = madd(g.mulPrev2[k][0], prev2[k], v)
		v = madd(g.mulPrev[k][0], prev[k], v)
		prev2[k], prev[k], o[k] = prev[k], v, v
	}
	if n >= 0 {
		out[n] = o[0] + (o[1] + o[2])
	}
}

// blurRowsScalar blurs each w-pixel row of src into dst.
func blurRowsScalar(dst, src []float32, w int) {
	g := &refGauss
	N := g.radius
	for y := 0; y+w <= len(src); y += w {
		row, out := src[y:y+w:y+w], dst[y:y+w:y+w]
		var prev, prev2 [3]float32
		n := -N + 1
		for ; n < min(g.firstUnrolled(), w); n++ {
			g.rowStep(row, out, n, &prev, &prev2)
		}
		for ; n < w-N+1-3; n += 4 {
			var sum [4]float32
			for j := range sum {
				sum[j] = row[n+j-N-1] + row[n+j+N-1]
			}
			var o [3][4]float32
			for k := range o {
				mi := &g.mulIn[k]
				for j := range 4 {
					v := sum[0] * mi[j]
					for s := 1; s <= j; s++ { // the taps ahead of output j are zero
						v = madd(mi[j-s], sum[s], v)
					}
					v = madd(g.mulPrev2[k][j], prev2[k], v)
					o[k][j] = madd(g.mulPrev[k][j], prev[k], v)
				}
				prev2[k], prev[k] = o[k][2], o[k][3]
			}
			for j := range 4 {
				out[n+j] = o[0][j] + (o[1][j] + o[2][j])
			}
		}
		for ; n < w; n++ {
			g.rowStep(row, out, n, &prev, &prev2)
		}
	}
}

// blurColsScalar blurs the w-pixel rows of src vertically into dst, each
// column its own recursion, run row by row (the state of every column at
// hand) so that memory is read in order.
func blurColsScalar(dst, src []float32, w int) {
	g := &refGauss
	N, h := g.radius, len(src)/w
	state := make([]float32, 6*w) // per term: the last output, the one before
	var prev, prev2 [3][]float32
	for k := range 3 {
		prev[k], prev2[k] = state[2*k*w:(2*k+1)*w], state[(2*k+1)*w:(2*k+2)*w]
	}
	sum := make([]float32, w)
	for n := -N + 1; n < h; n++ {
		t, b := n-N-1, n+N-1
		switch {
		case t >= 0 && b < h:
			for x, v := range src[t*w : (t+1)*w] {
				sum[x] = v + src[b*w+x]
			}
		case t >= 0:
			copy(sum, src[t*w:(t+1)*w])
		case b < h:
			copy(sum, src[b*w:(b+1)*w])
		default:
			clear(sum)
		}
		var out []float32
		if n >= 0 {
			out = dst[n*w : (n+1)*w]
		}
		p1, p3, p5 := prev[0][:w], prev[1][:w], prev[2][:w]
		q1, q3, q5 := prev2[0][:w], prev2[1][:w], prev2[2][:w]
		for x, s := range sum {
			o1 := madd(g.n2[0], s, madd(-g.d1[0], p1[x], -q1[x]))
			o3 := madd(g.n2[1], s, madd(-g.d1[1], p3[x], -q3[x]))
			o5 := madd(g.n2[2], s, madd(-g.d1[2], p5[x], -q5[x]))
			q1[x], q3[x], q5[x] = p1[x], p3[x], p5[x]
			p1[x], p3[x], p5[x] = o1, o3, o5
			if out != nil {
				out[x] = o1 + (o3 + o5)
			}
		}
	}
}
