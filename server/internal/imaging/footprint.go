package imaging

/*
#include <vips/vips.h>
#include "pipeline.h"
*/
import "C"

import (
	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Footprint estimates the bytes of memory processing op holds at most: the
// decoded image after shrink-on-load (as if held whole, which orientation
// may need); plus the output's pixels twice (resampling and encoding), an
// AVIF encoder's frames, and, for auto-quality, the kept intermediate and
// the metric's planes, or, where more, what an AVIF, HEIF or WebP decoder
// holds while it decodes the whole image (decodePeak); plus what a decoder holds for the whole image throughout
// (ImageInfo.DecodeBuffer: a progressive JPEG's coefficients, a GIF's
// frame). Measured peaks, with 720 px and same-size JPEG outputs: 36 MP
// AVIF 565 / 563 MB (estimated 648 / 648), 36 MP WebP 291 / 335 MB (324 /
// 396), 13 MP GIF 76 / 161 MB (91 / 195), 49 MP progressive 4:4:4 JPEG
// 288 / 731 MB (300 / 833); AVIF outputs from a 24 MP JPEG, same size,
// 2800 and 1700 px wide, 478 / 235 / 81 MB (552 / 307 / 104);
// auto-quality from a 24 MP JPEG at 720 px, JPEG / WebP / AVIF, 89 / 84 /
// 102 MB (99 / 99 / 108), at its own size 327 / 407 / 708 MB (489 / 489 /
// 777).
func (p *Processor) Footprint(op transform.Operation) int64 {
	src := op.Source
	bands, sample := int64(max(src.Bands, 1)), int64(max(src.SampleBytes, 1))
	pl, err := p.plan(op.Spec, src, C.IMGEDGE_RAW)
	if err != nil {
		return src.Pixels()*bands*sample + decodePeak(src) + src.DecodeBuffer
	}
	s := int64(pl.shrink)
	decoded := ceilDiv(int64(src.Width), s) * ceilDiv(int64(src.Height), s) * bands * sample
	outPixels := int64(pl.opts.width) * int64(pl.opts.height)
	work := 2 * outPixels * 4 // resampling and encoding
	if op.Spec.Format == variant.FormatAVIF {
		// aom's frames and lookahead: 20 bytes an output pixel measured
		// (4.3–24 MP, speeds 8 and 9), 12 beyond the general 8; coding at
		// 10 bits (by size, or as a search may settle it), 10–12 more
		// (measured at 0.8 and 2 MP).
		work += outPixels * 12
		if pl.opts.avif_bitdepth > 8 || op.Spec.AutoQuality && p.searchMaySettle10Bits(int(outPixels)) {
			work += outPixels * 12
		}
	}
	if op.Spec.Format == variant.FormatJPEG && p.fitLuma(op.Spec, src.Format) {
		// Fitting luma holds the whole output, 8-bit RGB (measured from a
		// 24 MP PNG, same size: 67 MB more at the peak).
		work += outPixels * 3
	}
	if op.Spec.Format == variant.FormatWebP && p.webpSharpYUV(src.Format, int(outPixels), src.AnimatesAs(op.Spec.Format)) {
		// libwebp's sharp YUV: its planes, measured 7 bytes an output
		// pixel beyond the plain conversion (a 1.8 MP PNG: 18 → 31 MB).
		work += outPixels * 8
	}
	if op.Spec.AutoQuality {
		// The kept intermediate, and the metric's planes for what it
		// scores (the whole image, or the mosaic of tiles when that is
		// smaller), with Go's heap headroom: ~110 bytes a scored pixel.
		scored := min(outPixels, int64(mosaicPixels(scoreTiles)))
		work += outPixels*4 + scored*110
	}
	if src.AnimatesAs(op.Spec.Format) {
		// Every output frame, held until the animation is encoded, with
		// ~16 KiB of its own; libwebp's canvases; and the decoder's
		// previous frame, which the next one is drawn over. Measured (GIFs
		// of 10–2000 frames, 100×75 to 2000×1500, fitted to 50–720 px or
		// at their size): 15–197 MB, estimated 16–214 (80 frames at 480 px:
		// 55 MB, estimated 62).
		work += int64(src.Frames)*(outPixels*4+16<<10) + 4*outPixels*4 + src.Pixels()*4
	}
	return decoded + max(work, decodePeak(src)) + src.DecodeBuffer
}

// decodePeak is what a decoder holds, beyond the decoded image, while it
// decodes a whole image it cannot shrink on load; it is given back before
// the image is resized and encoded. libheif and aom (AVIF, HEIF): their
// frames and conversions, 5 bytes per band and sample byte (measured 12.6
// beyond the decoded image for 8-bit RGB); libwebp: 2 (measured 5).
func decodePeak(src transform.ImageInfo) int64 {
	bands, sample := int64(max(src.Bands, 1)), int64(max(src.SampleBytes, 1))
	switch src.Format {
	case "avif", "heif":
		return src.Pixels() * 5 * bands * sample
	case "webp":
		return src.Pixels() * 2 * bands
	}
	return 0
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
