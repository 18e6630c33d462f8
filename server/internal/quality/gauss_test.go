package quality

import (
	"math"
	"strings"
	"testing"
)

// TestRecursiveGaussIsTheGaussian checks the recursive blur's impulse
// response (the kernels in use, and the scalar ones rounding each
// multiply-add twice, as on a CPU without FMA), away from the borders and
// at them: the Gaussian of σ 1.5
// within 0.002, symmetric, summing to one, nothing past the radius (5);
// at a border, the taps that fall outside are simply lost (zero padding).
func TestRecursiveGaussIsTheGaussian(t *testing.T) {
	if refGauss.radius != 5 {
		t.Fatalf("radius %d, the reference's is 5 for σ 1.5", refGauss.radius)
	}
	gauss := func(d int) float64 { return math.Exp(-float64(d*d)/(2*1.5*1.5)) / (1.5 * math.Sqrt(2*math.Pi)) }
	for _, tc := range []struct {
		name    string
		w, at   int
		lostSum float64 // the Gaussian's mass beyond the row's ends
	}{
		{"middle", 41, 20, 0},
		{"first pixel", 41, 0, 0.5 - gauss(0)/2},
		{"second pixel", 41, 1, 0.5 - gauss(0)/2 - gauss(1)},
		{"last pixel", 41, 40, 0.5 - gauss(0)/2},
		{"short row", 9, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(fused bool) { fusedMultiplyAdd = fused }(fusedMultiplyAdd)
			for _, pass := range []struct {
				name  string
				blur  func(dst, src []float32, w int)
				fused bool
			}{
				{"rows", blurRows, fusedMultiplyAdd}, {"columns", blurCols, fusedMultiplyAdd},
				{"rows, rounded twice", blurRowsScalar, false}, {"columns, rounded twice", blurColsScalar, false},
			} {
				fusedMultiplyAdd = pass.fused
				// One row of w pixels for the rows; w rows of 8 pixels (the
				// vector kernels' narrowest) for the columns, the impulse
				// across the whole row at.
				cols, width := 1, tc.w
				if strings.HasPrefix(pass.name, "columns") {
					cols, width = 8, 8
				}
				in, out := make([]float32, tc.w*cols), make([]float32, tc.w*cols)
				for c := range cols {
					in[tc.at*cols+c] = 1
				}
				pass.blur(out, in, width)
				var sum float64
				for i := range tc.w {
					v, d := float64(out[i*cols]), i-tc.at
					sum += v
					want := gauss(d)
					if d < -5 || d > 5 {
						want = 0
					}
					if math.Abs(v-want) > 0.002 {
						t.Errorf("%s: tap %+d is %.5f, the Gaussian's %.5f", pass.name, d, v, want)
					}
				}
				if want := 1 - tc.lostSum; math.Abs(sum-want) > 0.003 {
					t.Errorf("%s: the taps sum to %.4f, want %.4f", pass.name, sum, want)
				}
			}
		})
	}
}
