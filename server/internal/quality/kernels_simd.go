//go:build goexperiment.simd && amd64

package quality

import "simd/archsimd"

// With GOEXPERIMENT=simd (the Makefile's builds) and a CPU with AVX2 and
// FMA, the score's inner loops run eight pixels at a time; the tails of
// rows shorter than a vector run the scalar loops.
func init() {
	if simdKernels() {
		blurRowsH, blurRowsV, mulInto = blurRowsHAVX2, blurRowsVAVX2, mulIntoAVX2
		xybRow, ssimSums, edgeSums = xybRowAVX2, ssimSumsAVX2, edgeSumsAVX2
	}
}

// simdKernels reports whether the 8-lane kernels can run (and so do).
func simdKernels() bool { return archsimd.X86.AVX2() && archsimd.X86.FMA() }

type f32x8 = archsimd.Float32x8

func load(s []float32) f32x8 { return archsimd.LoadFloat32x8Slice(s) }

func splat(v float32) f32x8 { return archsimd.BroadcastFloat32x8(v) }

func gaussTapVectors() [blurRadius + 1]f32x8 {
	var k [blurRadius + 1]f32x8
	for i := range k {
		k[i] = splat(gaussKernel[blurRadius+i])
	}
	return k
}

func blurRowsHAVX2(dst, src []float32, w int) {
	const r = blurRadius
	k := gaussTapVectors()
	for y := 0; y+w <= len(src); y += w {
		row, out := src[y:y+w:y+w], dst[y:y+w:y+w]
		x := r
		for ; x+8 <= w-r; x += 8 {
			v := row[x-r : x+r+8 : x+r+8]
			acc := load(v[6:]).Mul(k[0])
			acc = load(v[5:]).Add(load(v[7:])).MulAdd(k[1], acc)
			acc = load(v[4:]).Add(load(v[8:])).MulAdd(k[2], acc)
			acc = load(v[3:]).Add(load(v[9:])).MulAdd(k[3], acc)
			acc = load(v[2:]).Add(load(v[10:])).MulAdd(k[4], acc)
			acc = load(v[1:]).Add(load(v[11:])).MulAdd(k[5], acc)
			acc = load(v[0:]).Add(load(v[12:])).MulAdd(k[6], acc)
			acc.StoreSlice(out[x:])
		}
		if x < w-r {
			// The last few outputs: the scalar loop on a window that
			// ends where the row does.
			blurRowsHScalar(out[x-r:], row[x-r:], w-x+r)
		}
	}
}

func blurRowsVAVX2(dst, src []float32, w int) {
	const r = blurRadius
	k := gaussTapVectors()
	k0, k1, k2, k3, k4, k5, k6 := gaussTaps()
	for y := r * w; y+(r+1)*w <= len(src); y += w {
		out := dst[y : y+w : y+w]
		row := func(d int) []float32 { return src[y+d*w : y+d*w+w : y+d*w+w] }
		u6, u5, u4, u3, u2, u1 := row(-6), row(-5), row(-4), row(-3), row(-2), row(-1)
		c := row(0)
		d1, d2, d3, d4, d5, d6 := row(1), row(2), row(3), row(4), row(5), row(6)
		x := 0
		for ; x+8 <= w; x += 8 {
			acc := load(c[x:]).Mul(k[0])
			acc = load(u1[x:]).Add(load(d1[x:])).MulAdd(k[1], acc)
			acc = load(u2[x:]).Add(load(d2[x:])).MulAdd(k[2], acc)
			acc = load(u3[x:]).Add(load(d3[x:])).MulAdd(k[3], acc)
			acc = load(u4[x:]).Add(load(d4[x:])).MulAdd(k[4], acc)
			acc = load(u5[x:]).Add(load(d5[x:])).MulAdd(k[5], acc)
			acc = load(u6[x:]).Add(load(d6[x:])).MulAdd(k[6], acc)
			acc.StoreSlice(out[x:])
		}
		for ; x < w; x++ {
			out[x] = k0*c[x] + k1*(u1[x]+d1[x]) + k2*(u2[x]+d2[x]) + k3*(u3[x]+d3[x]) + k4*(u4[x]+d4[x]) + k5*(u5[x]+d5[x]) + k6*(u6[x]+d6[x])
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
