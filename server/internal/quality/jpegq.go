// Package quality measures how an encoded image looks next to its source:
// SSIMULACRA 2.1, the perceptual metric that auto-quality searches on, and
// a JPEG's encoder quality estimated from its quantisation tables. Go, no
// cgo: pixels come from the imaging package, which decodes with libvips.
// The score's inner loops have 8-lane AVX2 versions (kernels_simd.go,
// built with GOEXPERIMENT=simd) beside the scalar ones (kernels.go).
package quality

import "github.com/imgedge/imgedge/server/internal/jpegscan"

// zigzag maps the order of quantisation values in a DQT segment to the
// natural (row-major) order of the 8×8 block.
var zigzag = [64]int{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// stdLuma is the JPEG standard's (Annex K) luminance table, natural order,
// which libjpeg scales by quality.
var stdLuma = [64]int{
	16, 11, 10, 16, 24, 40, 51, 61,
	12, 12, 14, 19, 26, 58, 60, 55,
	14, 13, 16, 24, 40, 57, 69, 56,
	14, 17, 22, 29, 51, 87, 80, 62,
	18, 22, 37, 56, 68, 109, 103, 77,
	24, 35, 55, 64, 81, 104, 113, 92,
	49, 64, 78, 87, 103, 121, 120, 101,
	72, 92, 95, 98, 112, 100, 103, 99,
}

// EstimateJPEGQuality reads the luminance quantisation table (table 0) of a
// JPEG and inverts libjpeg's quality scaling. It reports false when the data
// holds no such table. Encoders that use other tables get an approximation.
func EstimateJPEGQuality(data []byte) (int, bool) {
	info, err := jpegscan.Read(data)
	if err != nil || info.QuantTables[0] == nil {
		return 0, false
	}
	return tableQuality(info.QuantTables[0]), true
}

// tableQuality inverts libjpeg's scaling of the standard table for one
// stored in zig-zag order.
func tableQuality(table []uint16) int {
	var sum float64
	for k, v := range table {
		sum += float64(v) * 100 / float64(stdLuma[zigzag[k]])
	}
	scale := sum / 64
	var q float64
	if scale <= 100 {
		q = (200 - scale) / 2
	} else {
		q = 5000 / scale
	}
	return max(1, min(100, int(q+0.5)))
}
