package quality

import "math"

// The inner loops of a score, over one row or plane at a time. Where the
// build and the CPU allow (kernels_simd.go), they are replaced by vector
// versions that compute the same sums in the same float32 steps: the
// blurs to the bit, the others but for fused multiply-adds and lane-wise
// sums (a score moves by under 0.01, as tested).
var (
	// blurRows blurs each w-pixel row of src into dst (gauss.go).
	blurRows = blurRowsScalar
	// blurCols blurs the columns of the w-pixel rows of src into dst.
	blurCols = blurColsScalar
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
