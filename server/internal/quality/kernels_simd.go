//go:build goexperiment.simd && amd64

package quality

import "simd/archsimd"

// With GOEXPERIMENT=simd (the Makefile's builds) and a CPU with AVX2 and
// FMA, the score's inner loops run eight pixels at a time; the tails of
// rows shorter than a vector run the scalar loops.
func init() {
	if simdKernels() {
		blurRows, blurCols, mulInto = blurRowsAVX2, blurColsAVX2, mulIntoAVX2
		xybRow, ssimSums, edgeSums = xybRowAVX2, ssimSumsAVX2, edgeSumsAVX2
	}
}

// simdKernels reports whether the 8-lane kernels can run (and so do).
func simdKernels() bool { return archsimd.X86.AVX2() && archsimd.X86.FMA() }

type f32x8 = archsimd.Float32x8

func load(s []float32) f32x8 { return archsimd.LoadFloat32x8Slice(s) }

func splat(v float32) f32x8 { return archsimd.BroadcastFloat32x8(v) }

type f32x4 = archsimd.Float32x4

func load4(s []float32) f32x4 { return archsimd.LoadFloat32x4Slice(s) }

// pair8 puts a in the low four lanes and b in the high four.
func pair8(a, b f32x4) f32x8 { return f32x8{}.SetLo(a).SetHi(b) }

// rowCoefficients are refGauss's row coefficients as vectors, each the
// same four lanes twice (two rows run side by side, one per half): for
// term k, in[k][s] is mulIn shifted s lanes up (zeros below), the weight
// of the sum s lanes into a step on each of its four outputs.
type rowCoefficients struct {
	in                 [3][4]f32x8
	prev, prev2        [3]f32x8
	in0, prev0, prev20 [3]f32x8 // lane 0's, in every lane: single steps
}

func newRowCoefficients(g *recursiveGauss) *rowCoefficients {
	c := &rowCoefficients{}
	twice := func(v [4]float32) f32x8 { return pair8(load4(v[:]), load4(v[:])) }
	for k := range 3 {
		for s := range 4 {
			var shifted [4]float32
			copy(shifted[s:], g.mulIn[k][:4-s])
			c.in[k][s] = twice(shifted)
		}
		c.prev[k], c.prev2[k] = twice(g.mulPrev[k]), twice(g.mulPrev2[k])
		c.in0[k], c.prev0[k], c.prev20[k] = splat(g.mulIn[k][0]), splat(g.mulPrev[k][0]), splat(g.mulPrev2[k][0])
	}
	return c
}

var rowCoeffs = newRowCoefficients(&refGauss)

// blurRowsAVX2 is blurRowsScalar four outputs at a time, as the reference
// runs it on four lanes, for two rows at once (one per half of a vector:
// a row's steps form one long chain of dependent multiply-adds, two rows
// two chains). The steps are the same fused ones, so the rounding is too.
// It stays in vector instructions throughout, even for the single steps at
// a row's ends (mixing in scalar float32 arithmetic costs far more here
// than the arithmetic itself): rows are read from copies with zeros around
// them, and written through buffers with room for a vector past the end.
func blurRowsAVX2(dst, src []float32, w int) {
	N := refGauss.radius
	before := 2 * N // the first window reaches this far left
	var rows rowPair
	for i := range 2 {
		rows.padded[i] = make([]float32, before+w+N+3)
		rows.staged[i] = make([]float32, w+4)
	}
	for y := 0; y+w <= len(src); y += 2 * w {
		copy(rows.padded[0][before:], src[y:y+w])
		second := y+2*w <= len(src)
		if second {
			copy(rows.padded[1][before:], src[y+w:y+2*w])
		}
		rows.blur(w)
		copy(dst[y:y+w], rows.staged[0][:w])
		if second {
			copy(dst[y+w:y+2*w], rows.staged[1][:w])
		}
	}
}

// rowPair is two rows blurred side by side: each padded with zeros (2N
// before, N+3 after), each staged with four spare floats at the end.
type rowPair struct {
	padded, staged [2][]float32
}

// blur blurs the two w-pixel rows.
func (r *rowPair) blur(w int) {
	c := rowCoeffs
	N := refGauss.radius
	// Output n sums the row's pixels n-N-1 and n+N-1: the padded row's
	// pixels at left(n) and 2N further on.
	left := func(n int) int { return 2*N + n - N - 1 }
	window := func(n int) f32x8 {
		a, b := r.padded[0][left(n):], r.padded[1][left(n):]
		return pair8(load4(a).Add(load4(a[2*N:])), load4(b).Add(load4(b[2*N:])))
	}
	store := func(n int, o f32x8) {
		o.GetLo().StoreSlice(r.staged[0][n:])
		o.GetHi().StoreSlice(r.staged[1][n:])
	}
	// Each half of p1…p5 (pp1…pp5) holds its row's last (second to last)
	// output of term 1, 3, 5 in every lane.
	var p1, p3, p5, pp1, pp3, pp5 f32x8
	single := func(n int) {
		sum := window(n)
		sum = sum.SelectFromPairGrouped(0, 0, 0, 0, sum)
		o1 := c.prev0[0].MulAdd(p1, c.prev20[0].MulAdd(pp1, sum.Mul(c.in0[0])))
		o3 := c.prev0[1].MulAdd(p3, c.prev20[1].MulAdd(pp3, sum.Mul(c.in0[1])))
		o5 := c.prev0[2].MulAdd(p5, c.prev20[2].MulAdd(pp5, sum.Mul(c.in0[2])))
		pp1, pp3, pp5, p1, p3, p5 = p1, p3, p5, o1, o3, o5
		if n >= 0 { // all four lanes are stored: the next outputs overwrite three
			store(n, o1.Add(o3.Add(o5)))
		}
	}
	n := -N + 1
	for ; n < min(refGauss.firstUnrolled(), w); n++ {
		single(n)
	}
	for ; n < w-N+1-3; n += 4 {
		sum := window(n)
		s0, s1 := sum.SelectFromPairGrouped(0, 0, 0, 0, sum), sum.SelectFromPairGrouped(1, 1, 1, 1, sum)
		s2, s3 := sum.SelectFromPairGrouped(2, 2, 2, 2, sum), sum.SelectFromPairGrouped(3, 3, 3, 3, sum)
		o1 := c.term(0, s0, s1, s2, s3, p1, pp1)
		o3 := c.term(1, s0, s1, s2, s3, p3, pp3)
		o5 := c.term(2, s0, s1, s2, s3, p5, pp5)
		pp1, p1 = o1.SelectFromPairGrouped(2, 2, 2, 2, o1), o1.SelectFromPairGrouped(3, 3, 3, 3, o1)
		pp3, p3 = o3.SelectFromPairGrouped(2, 2, 2, 2, o3), o3.SelectFromPairGrouped(3, 3, 3, 3, o3)
		pp5, p5 = o5.SelectFromPairGrouped(2, 2, 2, 2, o5), o5.SelectFromPairGrouped(3, 3, 3, 3, o5)
		store(n, o1.Add(o3.Add(o5)))
	}
	for ; n < w; n++ {
		single(n)
	}
}

// term is term k's four outputs from the window sums s0…s3 (each
// broadcast in its half) and the term's last two outputs: the reference's
// multiply-adds, in its order.
func (c *rowCoefficients) term(k int, s0, s1, s2, s3, prev, prev2 f32x8) f32x8 {
	in := &c.in[k]
	v := s0.Mul(in[0])
	v = in[1].MulAdd(s1, v)
	v = in[2].MulAdd(s2, v)
	v = in[3].MulAdd(s3, v)
	v = c.prev2[k].MulAdd(prev2, v)
	return c.prev[k].MulAdd(prev, v)
}

// blurColsAVX2 is blurColsScalar on sixteen columns at a time, each lane
// its own column, in two vectors (two chains of dependent multiply-adds
// side by side). Where w is not a multiple of eight, the last vector takes
// the last eight columns again: a column's outputs depend on it alone.
// Rows under 8 pixels, which no score blurs, take the scalar loop.
func blurColsAVX2(dst, src []float32, w int) {
	if w < 8 {
		blurColsScalar(dst, src, w)
		return
	}
	g := &refGauss
	N, h := g.radius, len(src)/w
	var n2, negD1 [3]f32x8
	for k := range 3 {
		n2[k], negD1[k] = splat(g.n2[k]), splat(-g.d1[k])
	}
	var zero f32x8
	sumAt := func(x, n int) f32x8 {
		t, b := n-N-1, n+N-1
		switch {
		case t >= 0 && b < h:
			return load(src[t*w+x:]).Add(load(src[b*w+x:]))
		case t >= 0:
			return load(src[t*w+x:])
		case b < h:
			return load(src[b*w+x:])
		}
		return zero
	}
	for x0 := 0; x0 < w; x0 += 16 {
		xa, xb := min(x0, w-8), min(x0+8, w-8)
		// The last two outputs of terms 1, 3 and 5, for columns xa… and xb…
		var a1, a3, a5, aa1, aa3, aa5, b1, b3, b5, bb1, bb3, bb5 f32x8
		for n := -N + 1; n < h; n++ {
			sumA, sumB := sumAt(xa, n), sumAt(xb, n)
			// −d1·prev − prev2, then + n2·sum: NegMulSub and MulAdd.
			oa1 := n2[0].MulAdd(sumA, negD1[0].MulAdd(a1, zero.Sub(aa1)))
			oa3 := n2[1].MulAdd(sumA, negD1[1].MulAdd(a3, zero.Sub(aa3)))
			oa5 := n2[2].MulAdd(sumA, negD1[2].MulAdd(a5, zero.Sub(aa5)))
			ob1 := n2[0].MulAdd(sumB, negD1[0].MulAdd(b1, zero.Sub(bb1)))
			ob3 := n2[1].MulAdd(sumB, negD1[1].MulAdd(b3, zero.Sub(bb3)))
			ob5 := n2[2].MulAdd(sumB, negD1[2].MulAdd(b5, zero.Sub(bb5)))
			aa1, aa3, aa5, a1, a3, a5 = a1, a3, a5, oa1, oa3, oa5
			bb1, bb3, bb5, b1, b3, b5 = b1, b3, b5, ob1, ob3, ob5
			if n >= 0 {
				oa1.Add(oa3.Add(oa5)).StoreSlice(dst[n*w+xa:])
				ob1.Add(ob3.Add(ob5)).StoreSlice(dst[n*w+xb:])
			}
		}
	}
}

func mulIntoAVX2(dst, a, b []float32) {
	n := len(dst)
	i := 0
	for ; i+8 <= n; i += 8 {
		load(a[i:]).Mul(load(b[i:])).StoreSlice(dst[i:])
	}
	mulIntoScalar(dst[i:], a[i:], b[i:])
}

// cbrtAVX2 is cbrt32 eight at a time: the same first guess (the exponent
// divided by three, through float32) and two Newton steps.
func cbrtAVX2(x f32x8) f32x8 {
	third, magic := splat(1.0/3), archsimd.BroadcastInt32x8(0x2a514067)
	y := x.AsInt32x8().ConvertToFloat32().Mul(third).ConvertToInt32().Add(magic).AsFloat32x8()
	three := splat(3)
	for range 2 {
		y2 := y.Mul(y)
		y = y.Sub(y2.Mul(y).Sub(x).Div(y2.Mul(three)))
	}
	return y
}

func xybRowAVX2(ox, oy, ob, r, g, b []float32) {
	n := len(ox)
	var m [9]f32x8
	for i := range m {
		m[i] = splat(opsin[i])
	}
	bias, biasCbrt, zero := splat(opsinBias), splat(opsinBiasCbrtNeg), splat(0)
	half, fourteen := splat(0.5), splat(14)
	offX, offY, offB := splat(0.42), splat(0.01), splat(0.55)
	mix := func(i int, vr, vg, vb f32x8) f32x8 {
		// The same order of operations as the scalar loop.
		v := m[3*i].Mul(vr).Add(m[3*i+1].Mul(vg)).Add(m[3*i+2].Mul(vb)).Add(bias)
		return cbrtAVX2(v.Max(zero)).Add(biasCbrt)
	}
	i := 0
	for ; i+8 <= n; i += 8 {
		vr, vg, vb := load(r[i:]), load(g[i:]), load(b[i:])
		m0, m1 := mix(0, vr, vg, vb), mix(1, vr, vg, vb)
		y := half.Mul(m0.Add(m1))
		half.Mul(m0.Sub(m1)).Mul(fourteen).Add(offX).StoreSlice(ox[i:])
		y.Add(offY).StoreSlice(oy[i:])
		if ob != nil {
			mix(2, vr, vg, vb).Sub(y).Add(offB).StoreSlice(ob[i:])
		}
	}
	if ob != nil {
		ob = ob[i:]
	}
	xybRowScalar(ox[i:], oy[i:], ob, r[i:], g[i:], b[i:])
}

// sums64 sums float32 lanes in float64 (widened before they are added), as
// the scalar loops sum in float64.
type sums64 struct{ a, b archsimd.Float64x4 }

func (s *sums64) add(v f32x8) {
	s.a, s.b = s.a.Add(v.GetLo().ConvertToFloat64()), s.b.Add(v.GetHi().ConvertToFloat64())
}

func (s *sums64) total() float64 {
	var l [4]float64
	s.a.Add(s.b).Store(&l)
	return l[0] + l[1] + l[2] + l[3]
}

func ssimSumsAVX2(mu1, mu2, s11, s22, s12 []float32) (sum1, sum4 float64) {
	n := len(mu1)
	one, two, zero, c2 := splat(1), splat(2), splat(0), splat(ssimC2)
	var acc1, acc4 sums64
	i := 0
	for ; i+8 <= n; i += 8 {
		m1, m2 := load(mu1[i:]), load(mu2[i:])
		dm := m1.Sub(m2)
		numM := one.Sub(dm.Mul(dm))
		numS := two.Mul(load(s12[i:]).Sub(m1.Mul(m2))).Add(c2)
		denS := load(s11[i:]).Sub(m1.Mul(m1)).Add(load(s22[i:]).Sub(m2.Mul(m2))).Add(c2)
		d := one.Sub(numM.Mul(numS).Div(denS)).Max(zero)
		d2 := d.Mul(d)
		acc1.add(d)
		acc4.add(d2.Mul(d2))
	}
	t1, t4 := ssimSumsScalar(mu1[i:], mu2[i:], s11[i:], s22[i:], s12[i:])
	return acc1.total() + t1, acc4.total() + t4
}

func edgeSumsAVX2(a, b, mu1, mu2 []float32) (ring1, ring4, blur1, blur4 float64) {
	n := len(a)
	one, zero := splat(1), splat(0)
	abs := func(v f32x8) f32x8 { return v.Max(zero.Sub(v)) }
	var r1, r4, b1, b4 sums64
	i := 0
	for ; i+8 <= n; i += 8 {
		e := one.Add(abs(load(b[i:]).Sub(load(mu2[i:])))).Div(one.Add(abs(load(a[i:]).Sub(load(mu1[i:]))))).Sub(one)
		ring, blur := e.Max(zero), zero.Sub(e).Max(zero)
		ring2, blur2 := ring.Mul(ring), blur.Mul(blur)
		r1.add(ring)
		r4.add(ring2.Mul(ring2))
		b1.add(blur)
		b4.add(blur2.Mul(blur2))
	}
	tr1, tr4, tb1, tb4 := edgeSumsScalar(a[i:], b[i:], mu1[i:], mu2[i:])
	return r1.total() + tr1, r4.total() + tr4, b1.total() + tb1, b4.total() + tb4
}
