//go:build goexperiment.simd && amd64

package quality

import (
	"bytes"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"testing"
)

// TestVectorKernelsMatchScalar runs each 8-lane kernel and its scalar
// original on the same data, at lengths with and without a tail, and
// then whole scores both ways. The blurs run the same fused steps in the
// same order, so they must agree to the bit; elsewhere fused multiply-adds
// and lane-wise sums round differently, nothing else may differ. Those
// last-bit differences reach a score through the rounding left in the SSIM
// term's σ² (gauss.go), so whole scores may differ by a few thousandths.
func TestVectorKernelsMatchScalar(t *testing.T) {
	if !simdKernels() {
		t.Skip("this CPU has no AVX2/FMA: the scalar kernels run")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	plane := func(n int, lo, hi float32) []float32 {
		p := make([]float32, n)
		for i := range p {
			p[i] = lo + (hi-lo)*rng.Float32()
		}
		return p
	}
	closeTo := func(what string, got, want []float32) {
		t.Helper()
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*max(1, math.Abs(float64(want[i]))) {
				t.Fatalf("%s: [%d] = %g, scalar %g", what, i, got[i], want[i])
			}
		}
	}
	closeSum := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-5*max(1, math.Abs(want)) {
			t.Errorf("%s: %g, scalar %g", what, got, want)
		}
	}
	for _, w := range []int{8, 13, 20, 21, 64, 101} {
		const h = 15 // odd: the rows' last pair is one row
		src := plane(w*h, 0, 1)
		for _, k := range []struct {
			name           string
			vector, scalar func(dst, src []float32, w int)
		}{{"blurRows", blurRowsAVX2, blurRowsScalar}, {"blurCols", blurColsAVX2, blurColsScalar}} {
			got, want := make([]float32, w*h), make([]float32, w*h)
			k.vector(got, src, w)
			k.scalar(want, src, w)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s, %d px rows: [%d] = %g, scalar %g", k.name, w, i, got[i], want[i])
				}
			}
		}
		n := w * h
		a, b := plane(n, 0, 1), plane(n, 0, 1)
		got, want := make([]float32, n), make([]float32, n)
		mulIntoAVX2(got, a, b)
		mulIntoScalar(want, a, b)
		closeTo("mulInto", got, want)

		r, g, bl := plane(n, 0, 1), plane(n, 0, 1), plane(n, 0, 1)
		var vx, sx [3][]float32
		for c := range 3 {
			vx[c], sx[c] = make([]float32, n), make([]float32, n)
		}
		xybRowAVX2(vx[0], vx[1], vx[2], r, g, bl)
		xybRowScalar(sx[0], sx[1], sx[2], r, g, bl)
		for c := range 3 {
			closeTo("xybRow", vx[c], sx[c])
		}

		mu1, mu2 := plane(n, 0.2, 0.8), plane(n, 0.2, 0.8)
		s11, s22, s12 := plane(n, 0.3, 0.7), plane(n, 0.3, 0.7), plane(n, 0.1, 0.5)
		v1, v4 := ssimSumsAVX2(mu1, mu2, s11, s22, s12)
		w1, w4 := ssimSumsScalar(mu1, mu2, s11, s22, s12)
		closeSum("ssim 1-norm", v1, w1)
		closeSum("ssim 4th powers", v4, w4)

		vr1, vr4, vb1, vb4 := edgeSumsAVX2(a, b, mu1, mu2)
		sr1, sr4, sb1, sb4 := edgeSumsScalar(a, b, mu1, mu2)
		closeSum("ringing 1-norm", vr1, sr1)
		closeSum("ringing 4th powers", vr4, sr4)
		closeSum("blurring 1-norm", vb1, sb1)
		closeSum("blurring 4th powers", vb4, sb4)
	}

	ref := colourPhoto(333, 257) // a tail in every row, at every scale
	dist, err := jpeg.Decode(bytes.NewReader(jpegOf(t, ref, 40)))
	if err != nil {
		t.Fatal(err)
	}
	vector, errV := SSIMULACRA2(ref, dist)
	restore := useScalarKernels()
	scalar, errS := SSIMULACRA2(ref, dist)
	restore()
	if errV != nil || errS != nil {
		t.Fatal(errV, errS)
	}
	t.Logf("score %.6f with the vector kernels, %.6f with the scalar ones", vector, scalar)
	if math.Abs(vector-scalar) > 0.02 {
		t.Errorf("score %.5f with the vector kernels, %.5f with the scalar ones", vector, scalar)
	}
}

// useScalarKernels installs the scalar kernels until the returned func runs.
func useScalarKernels() (restore func()) {
	h, v, m, x, s, e := blurRows, blurCols, mulInto, xybRow, ssimSums, edgeSums
	blurRows, blurCols, mulInto = blurRowsScalar, blurColsScalar, mulIntoScalar
	xybRow, ssimSums, edgeSums = xybRowScalar, ssimSumsScalar, edgeSumsScalar
	return func() { blurRows, blurCols, mulInto, xybRow, ssimSums, edgeSums = h, v, m, x, s, e }
}
