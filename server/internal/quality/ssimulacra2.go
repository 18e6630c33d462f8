package quality

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"sync"
)

// SSIMULACRA2 scores how close dist looks to ref, with SSIMULACRA 2.1
// (Cloudinary's perceptual metric): 100 is identical, 90 visually lossless,
// 80 very high quality, 70 high, 50 medium, 30 low; negative scores are
// possible for very poor images. Both images are sRGB of the same size, 8
// or 16 bits a sample. Alpha is blended as the reference tool blends it: a translucent
// reference is scored on dark grey (0.1) and on bright (0.9), the worse
// score counting, and a translucent candidate of an opaque one on middle
// grey (flatten both first to score what a viewer sees on a background).
//
// It follows the published algorithm: linear sRGB downscaled over six
// scales, the XYB colour space made positive, SSIM without the luminance
// gamma term, and "ringing" and "blurring" edge maps, each in a 1-norm and
// a 4-norm, weighted by the published weights. The blur is the
// reference's own recursive Gaussian (σ 1.5), rounded step by step as the
// reference rounds it (gauss.go). Terms whose published weight is below negligibleWeight
// are not computed: 61 of the 108 weights are zero or nearly so, and
// skipping them (whole channels at full resolution among them) makes a
// score ~2.5× cheaper while moving it by less than 0.001 (tested).
func SSIMULACRA2(ref, dist image.Image) (float64, error) {
	r, err := NewSSIMULACRA2Reference(ref)
	if err != nil {
		return 0, err
	}
	return r.Score(dist)
}

// SSIMULACRA2Reference holds what scoring against one reference needs at
// every scale (its XYB planes and their blurred moments), so that a quality
// search scores many candidates for the cost of their half of the work.
type SSIMULACRA2Reference struct {
	w, h  int
	views []refView
	terms *termSet
}

// refView is the reference as scored on one background: an opaque
// reference has one (a translucent candidate is blended onto middle
// grey), a translucent one two, dark and bright, and the worse score
// counts, as the reference tool does.
type refView struct {
	background float64 // alpha is blended onto this, in sRGB's encoding
	scales     []refScale
}

// Backgrounds, as the reference tool picks them.
var (
	opaqueBackground       = []float64{0.5}
	translucentBackgrounds = []float64{0.1, 0.9}
)

// refScale is the reference at one scale.
type refScale struct {
	xyb     planes3
	mu, s11 planes3
}

// negligibleWeight: terms weighted less than this contribute under 0.01
// to a score (their sub-scores are means of bounded maps), so they are
// skipped.
const negligibleWeight = 0.01

// weightIndex is the position in ssimulacra2Weights of the weight of map m
// (0 SSIM, 1 ringing, 2 blurring) in norm n (0: 1-norm, 1: 4-norm) for
// channel c at scale.
func weightIndex(c, scale, norm, m int) int { return ((c*6+scale)*2+norm)*3 + m }

// termSet says which maps each channel needs at each scale.
type termSet struct {
	ssim, edges [3][6]bool // SSIM needs σ and σ12; the edge maps only μ
}

func newTermSet(minWeight float64) *termSet {
	t := &termSet{}
	for c := range 3 {
		for scale := range 6 {
			for norm := range 2 {
				w := func(m int) bool { return ssimulacra2Weights[weightIndex(c, scale, norm, m)] >= minWeight }
				t.ssim[c][scale] = t.ssim[c][scale] || w(0)
				t.edges[c][scale] = t.edges[c][scale] || w(1) || w(2)
			}
		}
	}
	return t
}

func (t *termSet) needed(c, scale int) bool { return t.ssim[c][scale] || t.edges[c][scale] }

// weighedTerms are the terms computed for scoring six scales, allTerms
// those with any weight (for tests), everyTerm all of them (for fewer
// scales).
var (
	weighedTerms = newTermSet(negligibleWeight)
	allTerms     = newTermSet(math.SmallestNonzeroFloat64)
	everyTerm    = newTermSet(0)
)

// NewSSIMULACRA2Reference prepares ref for scoring.
func NewSSIMULACRA2Reference(ref image.Image) (*SSIMULACRA2Reference, error) {
	return newReference(ref, weighedTerms)
}

func newReference(ref image.Image, terms *termSet) (*SSIMULACRA2Reference, error) {
	w, h := ref.Bounds().Dx(), ref.Bounds().Dy()
	if w < 8 || h < 8 {
		return nil, fmt.Errorf("ssimulacra2: %d×%d is too small (8×8 at least)", w, h)
	}
	if Scales(w, h) < 6 {
		// Fewer than six scales: the reference runs the weights on across
		// channels (see ssimulacra2Score), so a term weighs what another
		// term of the six-scale layout does: every one is computed.
		terms = everyTerm
	}
	r := &SSIMULACRA2Reference{w: w, h: h, terms: terms}
	backgrounds := opaqueBackground
	if translucent(ref) {
		backgrounds = translucentBackgrounds
	}
	for _, bg := range backgrounds {
		r.views = append(r.views, refView{background: bg, scales: referenceScales(ref, bg, terms)})
	}
	return r, nil
}

// translucent says whether any pixel of img is below opaque.
func translucent(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return !o.Opaque()
	}
	return true
}

// referenceScales prepares ref, blended onto background, at every scale.
func referenceScales(ref image.Image, background float64, terms *termSet) []refScale {
	w, h := ref.Bounds().Dx(), ref.Bounds().Dy()
	var scales []refScale
	lin := linearPlanes(ref, background)
	for scale := range Scales(w, h) {
		if scale > 0 {
			lin = lin.half()
		}
		x := positiveXYB(lin)
		rs := refScale{xyb: x, mu: planes3{w: x.w, h: x.h}, s11: planes3{w: x.w, h: x.h}}
		tmp, sq := make([]float32, x.w*x.h), make([]float32, x.w*x.h)
		for c := range 3 {
			if !terms.needed(c, scale) {
				continue
			}
			rs.mu.c[c] = make([]float32, x.w*x.h)
			gaussBlur(x.c[c], x.w, x.h, tmp, rs.mu.c[c])
			if terms.ssim[c][scale] {
				mulInto(sq, x.c[c], x.c[c])
				rs.s11.c[c] = make([]float32, x.w*x.h)
				gaussBlur(sq, x.w, x.h, tmp, rs.s11.c[c])
			}
		}
		scales = append(scales, rs)
	}
	return scales
}

// Scales is how many of SSIMULACRA2's six scales the reference computes
// for a w×h image (0 below 8×8): it halves the image for the next scale
// while the current one is at least 8 pixels each way, so its last scale
// may be smaller than that (a 200 px side is scored down to 7 px, six
// scales). With fewer than six (a side under 113 px), the reference runs
// its weights on across channels, each term weighed as another of the
// six-scale layout, and its scores stop tracking quality: a 40×30 photo
// scores -31 as a q30 JPEG and -20 at q90, a 120×90 one 34 and 42.
// Scores here follow the reference there too; the service does not search
// on them (imaging.Prepare).
func Scales(w, h int) int {
	if w < 8 || h < 8 {
		return 0
	}
	n := 1
	for n < 6 && w >= 8 && h >= 8 { // w×h is scale n-1's: scale n halves it
		w, h = (w+1)/2, (h+1)/2
		n++
	}
	return n
}

// Score scores dist against the reference (same size): the worse score of
// the reference's views.
func (r *SSIMULACRA2Reference) Score(dist image.Image) (float64, error) {
	if dist.Bounds().Dx() != r.w || dist.Bounds().Dy() != r.h {
		return 0, fmt.Errorf("ssimulacra2: sizes differ: %d×%d and %v", r.w, r.h, dist.Bounds().Size())
	}
	scratch := getScoreScratch(r.w, r.h)
	defer scratchBuffers.Put(scratch)
	score := math.Inf(1)
	for _, v := range r.views {
		score = min(score, r.scoreView(v, dist, scratch))
	}
	return score, nil
}

// scoreView scores dist, blended onto v's background, against v.
func (r *SSIMULACRA2Reference) scoreView(v refView, dist image.Image, scratch *scoreScratch) float64 {
	lin := scratch.lin[0]
	linearPlanesInto(lin, dist, v.background)
	sums := make([]float64, 0, 18*len(v.scales))
	for scale, rs := range v.scales {
		if scale > 0 {
			lin = lin.halfInto(scratch.lin[scale%2])
		}
		xyb := scratch.xyb(lin.w, lin.h)
		positiveXYBInto(xyb, lin, r.terms.needed(2, scale))
		sums = append(sums, scaleScores(rs, xyb, r.terms, scale, scratch)...)
	}
	return ssimulacra2Score(sums)
}

// scoreScratch holds the buffers one score needs, sized for the first
// scale and resliced for the smaller ones.
type scoreScratch struct {
	buf                      []float32 // what the others are cut from
	tmp, prod, mu2, s22, s12 []float32
	planes                   [3][]float32
	// lin holds the linear image at the even scales and at the odd ones.
	lin [2]planes3
}

// scratchBuffers holds *scoreScratch for any reference: a search scores its
// tiles one after another, so one buffer serves them all (and every later
// trial) instead of one per tile. Score overwrites what it reads, so a
// buffer is cut anew for each size and never cleared.
var scratchBuffers sync.Pool

// getScoreScratch returns scratch for a w×h score, from the pool when a
// buffer there is large enough.
func getScoreScratch(w, h int) *scoreScratch {
	n, half := w*h, ((w+1)/2)*((h+1)/2)
	need := 11*n + 3*half
	sc, _ := scratchBuffers.Get().(*scoreScratch)
	if sc == nil || cap(sc.buf) < need {
		sc = &scoreScratch{buf: make([]float32, need)}
	}
	buf := sc.buf[:need]
	next := func(n int) []float32 {
		s := buf[:n:n]
		buf = buf[n:]
		return s
	}
	sc.tmp, sc.prod, sc.mu2, sc.s22, sc.s12 = next(n), next(n), next(n), next(n), next(n)
	for c := range 3 {
		sc.planes[c] = next(n)
	}
	sc.lin = [2]planes3{{w: w, h: h}, {w: (w + 1) / 2, h: (h + 1) / 2}}
	for c := range 3 {
		sc.lin[0].c[c], sc.lin[1].c[c] = next(n), next(half)
	}
	return sc
}

// xyb returns the scratch planes as a w×h image.
func (sc *scoreScratch) xyb(w, h int) planes3 {
	p := planes3{w: w, h: h}
	for c := range 3 {
		p.c[c] = sc.planes[c][:w*h]
	}
	return p
}

// planes3 is a three-channel float image, channel-major.
type planes3 struct {
	w, h int
	c    [3][]float32
}

func newPlanes3(w, h int) planes3 {
	p := planes3{w: w, h: h}
	for i := range p.c {
		p.c[i] = make([]float32, w*h)
	}
	return p
}

// decodeSRGB is sRGB's transfer function: encoded 0..1 to linear light.
func decodeSRGB(v float64) float64 {
	if v <= 0.04045 {
		return v / 12.92
	}
	return math.Pow((v+0.055)/1.055, 2.4)
}

// srgbToLinear maps 8-bit sRGB to linear light, as a table.
var srgbToLinear = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(decodeSRGB(float64(i) / 255))
	}
	return t
}()

// linearPlanes decodes an image to linear sRGB, blending alpha onto
// background (in sRGB's encoding, 0–1) first, as the reference tool does.
func linearPlanes(img image.Image, background float64) planes3 {
	p := newPlanes3(img.Bounds().Dx(), img.Bounds().Dy())
	linearPlanesInto(p, img, background)
	return p
}

// linearPlanesInto is linearPlanes into p, of the image's size.
func linearPlanesInto(p planes3, img image.Image, background float64) {
	if deepColour(img) {
		linearPlanes16Into(p, img, background)
		return
	}
	b := img.Bounds()
	nrgba, ok := img.(*image.NRGBA)
	if !ok || b.Min != (image.Point{}) {
		nrgba = image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
		draw.Draw(nrgba, nrgba.Bounds(), img, b.Min, draw.Src)
	}
	for y := range p.h {
		row := nrgba.Pix[y*nrgba.Stride:][:4*p.w]
		r, g, bl := p.c[0][y*p.w:][:p.w], p.c[1][y*p.w:][:p.w], p.c[2][y*p.w:][:p.w]
		for x := range p.w {
			px := row[4*x : 4*x+4 : 4*x+4]
			if px[3] == 255 {
				r[x], g[x], bl[x] = srgbToLinear[px[0]], srgbToLinear[px[1]], srgbToLinear[px[2]]
				continue
			}
			a := float64(px[3]) / 255
			blend := func(v uint8) float32 { return float32(decodeSRGB(a*float64(v)/255 + (1-a)*background)) }
			r[x], g[x], bl[x] = blend(px[0]), blend(px[1]), blend(px[2])
		}
	}
}

// deepColour says whether img has more than 8 bits a sample (a 16-bit
// PNG, as some decoders write a 10-bit AVIF): the reference reads those
// bits, so they are scored, not rounded to 8 first.
func deepColour(img image.Image) bool {
	switch img.(type) {
	case *image.NRGBA64, *image.RGBA64, *image.Gray16:
		return true
	}
	return false
}

// linearPlanes16Into is linearPlanesInto at 16 bits a sample.
func linearPlanes16Into(p planes3, img image.Image, background float64) {
	b := img.Bounds()
	for y := range p.h {
		r, g, bl := p.c[0][y*p.w:][:p.w], p.c[1][y*p.w:][:p.w], p.c[2][y*p.w:][:p.w]
		for x := range p.w {
			c := color.NRGBA64Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
			a := float64(c.A) / 0xFFFF
			lin := func(v uint16) float32 { return float32(decodeSRGB(a*float64(v)/0xFFFF + (1-a)*background)) }
			r[x], g[x], bl[x] = lin(c.R), lin(c.G), lin(c.B)
		}
	}
}

// half box-downsamples by 2, clamping at the far edges.
func (p planes3) half() planes3 {
	return p.halfInto(newPlanes3((p.w+1)/2, (p.h+1)/2))
}

// halfInto is half into the buffers of out, resliced to the half size.
func (p planes3) halfInto(out planes3) planes3 {
	out.w, out.h = (p.w+1)/2, (p.h+1)/2
	for c := range 3 {
		in, o := p.c[c], out.c[c][:out.w*out.h]
		out.c[c] = o
		for oy := range out.h {
			y0, y1 := 2*oy, min(2*oy+1, p.h-1)
			r0, r1, dst := in[y0*p.w:][:p.w], in[y1*p.w:][:p.w], o[oy*out.w:][:out.w]
			for ox := range dst {
				x0, x1 := 2*ox, min(2*ox+1, p.w-1)
				dst[ox] = (r0[x0] + r0[x1] + r1[x0] + r1[x1]) * 0.25
			}
		}
	}
	return out
}

// The opsin absorbance matrix and bias of JPEG XL's XYB.
var (
	opsin = [9]float32{
		0.30, 1 - 0.078 - 0.30, 0.078,
		0.23, 1 - 0.078 - 0.23, 0.078,
		0.24342268924547819, 0.20476744424496821, 1 - 0.24342268924547819 - 0.20476744424496821,
	}
	opsinBias        float32 = 0.0037930732552754493
	opsinBiasCbrtNeg         = -float32(math.Cbrt(float64(opsinBias)))
)

// cbrt32 is a cube root in float32 precision: a bit-level first guess and
// two Newton steps (relative error under 1e-6, a fifth of math.Cbrt's time).
func cbrt32(x float32) float32 {
	if x == 0 {
		return 0
	}
	y := math.Float32frombits(math.Float32bits(x)/3 + 0x2a514067)
	y -= (y*y*y - x) / (3 * y * y)
	y -= (y*y*y - x) / (3 * y * y)
	return y
}

// positiveXYB converts linear sRGB to XYB, rescaled to about 0..1 with B-Y
// in place of B (SSIMULACRA2's MakePositiveXYB).
func positiveXYB(lin planes3) planes3 {
	out := newPlanes3(lin.w, lin.h)
	positiveXYBInto(out, lin, true)
	return out
}

// positiveXYBInto is positiveXYB into out; without withB, the B plane (a
// third of the cube roots) is left as it was.
func positiveXYBInto(out, lin planes3, withB bool) {
	n := len(lin.c[0])
	ob := out.c[2][:n]
	if !withB {
		ob = nil
	}
	xybRow(out.c[0][:n], out.c[1][:n], ob, lin.c[0], lin.c[1][:n], lin.c[2][:n])
}

// gaussBlur blurs a w×h plane as the reference does (see gauss.go), rows
// into tmp, then columns into out; pixels outside count as zero.
func gaussBlur(in []float32, w, h int, tmp, out []float32) {
	tmp, out = tmp[:w*h], out[:w*h]
	blurRows(tmp, in[:w*h], w)
	blurCols(out, tmp, w)
}

// scaleScores computes one scale's 18 sub-scores, channel by channel: SSIM
// error 1- and 4-norm, ringing 1- and 4-norm, blurring 1- and 4-norm.
// Terms the set skips are left at zero.
func scaleScores(ref refScale, x2 planes3, terms *termSet, scale int, sc *scoreScratch) []float64 {
	w, h := x2.w, x2.h
	n := w * h
	tmp, prod := sc.tmp[:n], sc.prod[:n]
	mu2, s22, s12 := sc.mu2[:n], sc.s22[:n], sc.s12[:n]
	scores := make([]float64, 0, 18)
	for c := range 3 {
		if !terms.needed(c, scale) {
			scores = append(scores, 0, 0, 0, 0, 0, 0)
			continue
		}
		a, b := ref.xyb.c[c], x2.c[c]
		mu1, s11 := ref.mu.c[c], ref.s11.c[c]
		gaussBlur(b, w, h, tmp, mu2)
		var ssim1, ssim4, ring1, ring4, blur1, blur4 float64
		if terms.ssim[c][scale] {
			mulInto(prod, b, b)
			gaussBlur(prod, w, h, tmp, s22)
			mulInto(prod, a, b)
			gaussBlur(prod, w, h, tmp, s12)
			ssim1, ssim4 = ssimSums(mu1, mu2[:n], s11, s22, s12)
		}
		if terms.edges[c][scale] {
			ring1, ring4, blur1, blur4 = edgeSums(a[:n], b[:n], mu1[:n], mu2[:n])
		}
		inv := 1 / float64(n)
		norm4 := func(s float64) float64 { return math.Sqrt(math.Sqrt(s * inv)) }
		scores = append(scores, ssim1*inv, norm4(ssim4), ring1*inv, norm4(ring4), blur1*inv, norm4(blur4))
	}
	return scores
}

// ssimulacra2Weights are the published weights, in the reference's order:
// channel (X, Y, B), scale (1:1 … 1:32), norm (1, 4), then map (SSIM,
// ringing, blurring).
var ssimulacra2Weights = [108]float64{
	0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
	0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752,
	0.0, 0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
	0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
	0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
	0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
	0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
	0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
	225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
	176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408,
	0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0,
	0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
	0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0,
	0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0,
	0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0,
	0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
	95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379,
	0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
}

// ssimulacra2Score combines the sub-scores of every scale (sums holds 18 per
// scale: per channel ssim1, ssim4, ring1, ring4, blur1, blur4).
func ssimulacra2Score(sums []float64) float64 {
	// As in the reference, the weights run on over the scales computed: an
	// image too small for six scales uses the first weights of the next
	// channel for its last scales.
	scales := len(sums) / 18
	var s float64
	i := 0
	for c := range 3 {
		for scale := range scales {
			base := scale*18 + c*6
			for norm := range 2 {
				s += ssimulacra2Weights[i] * math.Abs(sums[base+norm])
				s += ssimulacra2Weights[i+1] * math.Abs(sums[base+2+norm])
				s += ssimulacra2Weights[i+2] * math.Abs(sums[base+4+norm])
				i += 3
			}
		}
	}
	s *= 0.9562382616834844
	s = 2.326765642916932*s - 0.020884521182843837*s*s + 6.248496625763138e-05*s*s*s
	if s <= 0 {
		return 100
	}
	return 100 - 10*math.Pow(s, 0.6276336467831387)
}
