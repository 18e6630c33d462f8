package quality

import "math"

// The inner loops of a score, over one row or plane at a time. Where the
// build and the CPU allow (kernels_simd.go), they are replaced by 8-lane
// versions that compute the same sums in the same float32 steps (fused
// multiply-adds and lane-wise sums aside: a score moves by 0.0002 on the
// test image, under 0.001 as tested).
var (
	// blurRowsH blurs each w-pixel row of src horizontally into dst,
	// away from the row's ends (blurRadius pixels each side are left).
	blurRowsH = blurRowsHScalar
	// blurRowsV blurs the w-pixel rows of src vertically into dst, away
	// from the first and last blurRadius rows (left as they were).
	blurRowsV = blurRowsVScalar
	// mulInto sets dst to a×b, element by element.
	mulInto = mulIntoScalar
	// xybRow converts linear sRGB to positive XYB (see positiveXYB); a nil
	// ob skips the B plane.
	xybRow = xybRowScalar
	// ssimSums sums, over the pixels, SSIM's error without the luminance
	// gamma term (1-norm and 4th powers) from the blurred moments.
	ssimSums = ssimSumsScalar
	// edgeSums sums the ringing and blurring maps (1-norm and 4th powers)
	// from the planes and their blurs.
	edgeSums = edgeSumsScalar
)

// blurRadius is the Gaussian's radius in taps: 4σ.
const blurRadius = 6

func blurRowsHScalar(dst, src []float32, w int) {
	k0, k1, k2, k3, k4, k5, k6 := gaussTaps()
	const r = blurRadius
	for y := 0; y+w <= len(src); y += w {
		row, out := src[y:y+w:y+w], dst[y:y+w:y+w]
		for x := r; x < w-r; x++ {
			v := row[x-r : x+r+1 : x+r+1]
			out[x] = k0*v[6] + k1*(v[5]+v[7]) + k2*(v[4]+v[8]) + k3*(v[3]+v[9]) + k4*(v[2]+v[10]) + k5*(v[1]+v[11]) + k6*(v[0]+v[12])
		}
	}
}

func blurRowsVScalar(dst, src []float32, w int) {
	k0, k1, k2, k3, k4, k5, k6 := gaussTaps()
	for y := blurRadius * w; y+(blurRadius+1)*w <= len(src); y += w {
		row := func(d int) []float32 { return src[y+d*w : y+d*w+w : y+d*w+w] }
		u6, u5, u4, u3, u2, u1 := row(-6), row(-5), row(-4), row(-3), row(-2), row(-1)
		c, out := row(0), dst[y:y+w:y+w]
		d1, d2, d3, d4, d5, d6 := row(1), row(2), row(3), row(4), row(5), row(6)
		for x := range out {
			out[x] = k0*c[x] + k1*(u1[x]+d1[x]) + k2*(u2[x]+d2[x]) + k3*(u3[x]+d3[x]) + k4*(u4[x]+d4[x]) + k5*(u5[x]+d5[x]) + k6*(u6[x]+d6[x])
		}
	}
}

// gaussTaps are the kernel's centre tap and the taps 1…6 away.
func gaussTaps() (k0, k1, k2, k3, k4, k5, k6 float32) {
	k := gaussKernel[blurRadius:]
	return k[0], k[1], k[2], k[3], k[4], k[5], k[6]
}

func mulIntoScalar(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

func xybRowScalar(ox, oy, ob, r, g, b []float32) {
	n := len(ox)
	oy, r, g, b = oy[:n], r[:n], g[:n], b[:n]
	for i := range n {
		m0 := cbrt32(max(opsin[0]*r[i]+opsin[1]*g[i]+opsin[2]*b[i]+opsinBias, 0)) + opsinBiasCbrtNeg
		m1 := cbrt32(max(opsin[3]*r[i]+opsin[4]*g[i]+opsin[5]*b[i]+opsinBias, 0)) + opsinBiasCbrtNeg
		y := 0.5 * (m0 + m1)
		ox[i] = 0.5*(m0-m1)*14 + 0.42
		oy[i] = y + 0.01
		if ob != nil {
			m2 := cbrt32(max(opsin[6]*r[i]+opsin[7]*g[i]+opsin[8]*b[i]+opsinBias, 0)) + opsinBiasCbrtNeg
			ob[i] = (m2 - y) + 0.55
		}
	}
}

// ssimC2 stabilises SSIM's structure term.
const ssimC2 = 0.0009

func ssimSumsScalar(mu1, mu2, s11, s22, s12 []float32) (sum1, sum4 float64) {
	n := len(mu1)
	mu2, s11, s22, s12 = mu2[:n], s11[:n], s22[:n], s12[:n]
	for i := range n {
		m1, m2 := mu1[i], mu2[i]
		numM := 1 - (m1-m2)*(m1-m2)
		numS := 2*(s12[i]-m1*m2) + ssimC2
		denS := (s11[i] - m1*m1) + (s22[i] - m2*m2) + ssimC2
		d := max(1-float64(numM*numS/denS), 0)
		sum1 += d
		sum4 += d * d * d * d
	}
	return sum1, sum4
}

func edgeSumsScalar(a, b, mu1, mu2 []float32) (ring1, ring4, blur1, blur4 float64) {
	n := len(a)
	b, mu1, mu2 = b[:n], mu1[:n], mu2[:n]
	for i := range n {
		e := float64((1+abs32(b[i]-mu2[i]))/(1+abs32(a[i]-mu1[i])) - 1)
		if e > 0 {
			ring1 += e
			ring4 += e * e * e * e
		} else {
			blur1 -= e
			blur4 += e * e * e * e
		}
	}
	return ring1, ring4, blur1, blur4
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
