package imaging

/*
#include <vips/vips.h>
#include "pipeline.h"
*/
import "C"

import (
	"cmp"
	"time"

	"github.com/imgedge/imgedge/client/variant"
)

// AVIFSpeedBySize picks the AV1 speed, and the bit depth, from the output's
// size (avifEncodingFor).
const AVIFSpeedBySize = -1

// avifEncoding is how aom encodes an AVIF: its speed, and the bit depth it
// codes at (the 8-bit pixels are widened to 10 bits before coding).
type avifEncoding struct {
	speed    int // 0 (slowest, smallest) to 9 (fastest)
	bitDepth int // 8 or 10
}

// avifRungs are the encodings avifEncodingFor chooses from, the fewest
// bytes first, each with the CPU a megapixel costs on the costliest content
// measured on the project's machine (libvips 8.18, aom): a detailed photo
// at the qualities auto-quality picks (q60–65) costs per megapixel 2.6 s at
// speed 6, 1.2 s at 8 and 0.35 s at 9 — typical photos at q50 five times
// less (0.48, 0.13, 0.06 s). Speed 7 was no smaller than 8. Speed 6 needs
// 3–12 % fewer bytes than 8 at the same SSIMULACRA2.
var avifRungs = []struct {
	enc      avifEncoding
	secPerMP float64 // worst case measured
}{
	{avifEncoding{speed: 6, bitDepth: 10}, 2.6 * avif10BitCost},
	{avifEncoding{speed: 6, bitDepth: 8}, 2.6},
	{avifEncoding{speed: 8, bitDepth: 8}, 1.2},
}

// avif10BitCost bounds the CPU of coding at 10 bits against 8, at speed 6:
// measured 1.15–1.49× on the corpus at 720 px and at its own size, and on
// noise. It needs 1–5 % fewer bytes at the same SSIMULACRA2 (seven photos
// at 720 px around 70; 1.3–4.6 % on the corpus at its own size).
const avif10BitCost = 1.5

// avifEncodingFor is the encoding with the fewest bytes whose encode of
// pixels stays within about avifEncodeBudget of CPU on one core for the
// costliest content: speed 6 at 10 bits up to 2 MP (1600×1200); at 8 bits
// up to 3 MP; speed 8 up to 6.5 MP; 9 above, which keeps the largest source
// allowed (50 MP) under ~18 s in the worst case, inside the default 30 s
// process timeout with one job per core.
func avifEncodingFor(pixels int) avifEncoding {
	mp := float64(pixels) / 1e6
	for _, r := range avifRungs {
		if mp*r.secPerMP <= avifEncodeBudget.Seconds() {
			return r.enc
		}
	}
	return avifEncoding{speed: 9, bitDepth: 8}
}

// WebPEffortBySize picks libwebp's method from the output's size
// (webpEffortFor).
const WebPEffortBySize = -1

// webpEffortFor is libwebp's default method, 4, where the costliest content
// measured stays within webpEncodeBudget, and 2 above: on this machine a
// 49 MP noise image at q72 costs 21.8 s at 4 (0.45 s per megapixel, 0.49 at
// q90; 3 costs the same) and 4.4 s at 2. Auto-quality encodes a WebP whole
// for each trial (its quantiser follows whole-picture statistics, so a
// mosaic of tiles does not stand for it), two to four times, where AVIF
// and JPEG search on a mosaic and encode the whole image once. Method 2
// needs 1–9 % more bytes than 4 at the same SSIMULACRA2 on the corpus
// photos (auto-quality at 70), for half the CPU, so it is kept for what 4
// cannot afford: above 13 MP (a 12 MP phone photo keeps 4).
func webpEffortFor(pixels int) int {
	if time.Duration(float64(pixels)/1e6*float64(webpMethod4PerMP)) <= webpEncodeBudget {
		return 4
	}
	return 2
}

// webpMethod4PerMP is method 4's CPU per megapixel on the costliest content
// measured (noise, q90).
const webpMethod4PerMP = 500 * time.Millisecond

// webpEncodeBudget bounds one WebP encode's CPU when the effort is by size:
// an auto-quality search of three or four whole encodes stays inside the
// default 30 s process timeout.
const webpEncodeBudget = 6500 * time.Millisecond

// webpEffort is the configured method, or the one for an output of pixels.
func (p *Processor) webpEffort(pixels int) int {
	if p.cfg.WebPEffort == WebPEffortBySize {
		return webpEffortFor(pixels)
	}
	return p.cfg.WebPEffort
}

// graphicSource says whether an original in format source ("png", "jpeg",
// ...) is where graphics, screenshots and charts come from, whose coloured
// edges 4:2:0 chroma loses: PNG and GIF. Photos mostly come as JPEG, AVIF,
// HEIF or WebP, with chroma already subsampled.
func graphicSource(source string) bool { return source == "png" || source == "gif" }

// webpSharpYUVPixels bounds the outputs that get libwebp's sharp YUV: it
// costs ~100 ms of CPU per megapixel and encode (2000×1500, method 4: 330
// → 630 ms), which an auto-quality search pays per trial.
const webpSharpYUVPixels = 4_000_000

// webpSharpYUV says whether a still WebP of pixels from a source in format
// source gets libwebp's sharp YUV conversion: where configured, for graphic
// sources (graphicSource), up to webpSharpYUVPixels. Measured at equal
// SSIMULACRA2 (scores 55–85) on the reference images: bimg's test graphic
// 16.4 % fewer bytes, the photos −0.5 to +1.9 %, 2.5 % over all six; on
// coloured lines at their size, 37–40 points more for 6–8 % more bytes.
func (p *Processor) webpSharpYUV(source string, pixels int, animate bool) bool {
	return p.cfg.WebPSharpYUV && graphicSource(source) && pixels <= webpSharpYUVPixels && !animate
}

// avifEncodeBudget bounds one AVIF encode's CPU when the speed is by size.
const avifEncodeBudget = 8 * time.Second

// A by-size encoding is sized for the costliest content, and most photos
// cost a fifth of it: an auto-quality search, which encodes a mosaic of the
// image's tiles first, measures what this content costs and encodes at
// avifMeasuredSpeed, at 10 bits or else at 8, when that fits
// avifMeasuredBudget (settleAVIF). Speed 6 needs 6–12 % fewer bytes than 9
// at the same SSIMULACRA2 on the corpus's 6–24 MP photos.
const (
	avifMeasuredSpeed  = 6
	avifMeasuredBudget = 16 * time.Second
	// searchTrials is the most trials a search usually makes (3–4 at worst).
	searchTrials = 4
)

// searchMaySettle10Bits is whether an auto-quality search may settle an
// output of pixels at 10 bits, where its content is cheap enough
// (settleAVIF): up to avif10BitSearchPixels.
func (p *Processor) searchMaySettle10Bits(pixels int) bool {
	return p.cfg.AVIFSpeed == AVIFSpeedBySize && pixels <= avif10BitSearchPixels
}

// avif10BitSearchPixels bounds the outputs a search may code at 10 bits
// beyond the size rule's 2 MP. The encoder holds ~12 bytes more an output
// pixel at 10 bits, which admission counts wherever a search may settle
// there: up to 6.5 MP that is at most 75 MB, while a same-size search of a
// 12 MP phone photo, which would count 139 MiB more (577 MiB), still fits the
// default memory budget's 576 MiB for pixels (437 MiB). The corpus's 6 MP
// photo needs 6 % fewer bytes at 10 bits.
const avif10BitSearchPixels = 6_500_000

// avifSpeed6PerMP bounds the CPU a megapixel costs at speed 6 from the bits
// per pixel an encode of the same content takes at a faster speed and the
// same quality: above every measurement on this project's machine (6–24 MP
// photos of the corpus 0.34–0.74 s at 0.2–0.7 bits, small images 0.8–1.3 s
// at 0.8–1.9, noise 0.66–1.42 s at 2.1–7.9, synthetic screen content
// 0.44–1.57 s at 1.2–5.0).
func avifSpeed6PerMP(bitsPerPixel float64) time.Duration {
	return time.Duration((0.5 + 0.6*bitsPerPixel) * float64(time.Second))
}

// MozJPEG is what the service uses by default, chosen by SSIMULACRA2 against
// Debian's libvips 8.14 (libjpeg-turbo) on the reference images of
// quality-reference (≤ 1024 px, scores 55–85, make savings): trellis
// quantisation and overshoot deringing (as sharp's mozjpeg preset), quant
// table 5 (Klein, Silverstein and Carney: 2.5 points more than mozjpeg's
// default table 3 at equal score; tables 0–8 measured), and from q88 table
// 2 (mozjpeg's, tuned for MS-SSIM), the best of 0–8 at the top, where table
// 5 falls behind: against Debian's encodes scoring 80–95, 3.8 % fewer bytes
// where table 5 throughout needed 1.9 % more (at the switch an image's
// score can dip, by 0.6 on 1 of 14 curves measured; auto-quality keeps only
// qualities it measured passing). Chroma is subsampled up to
// q94 (libvips switches to full chroma at q90, which needed up to 15 points
// more bytes than a subsampled q9x at scores 83–90). With progressive
// scans (Progressive, set apart: it is the operator's choice) the saving
// is 13.7 % at scores 55–85, where the earlier baseline table-3 settings
// saved 8.5 %; with fitted luma (FitLuma, PNG and GIF sources), 14.5 %
// (README, "Savings").
var MozJPEG = JPEGTuning{Trellis: true, Deringing: true, QuantTable: 5, FineQuantTable: 2, FineFrom: 88, FullChromaFrom: 95, FitLuma: true}

// JPEGTuning are the JPEG encoder's settings. Trellis, Deringing and the
// quant tables need libvips built with mozjpeg (another libjpeg ignores
// them).
type JPEGTuning struct {
	Trellis    bool // trellis quantisation
	Deringing  bool // overshoot deringing on hard edges
	QuantTable int  // quantisation table 0–8 (3: ImageMagick's, mozjpeg's own default)
	// FineQuantTable replaces QuantTable from quality FineFrom on (0: never).
	FineQuantTable, FineFrom int
	// FullChromaFrom is the quality from which chroma keeps full
	// resolution (below it: 4:2:0); 0 is libvips' own switch, 90.
	FullChromaFrom int
	// Progressive makes every JPEG progressive, with scans optimised per
	// image where the library can (mozjpeg): 1–3 % fewer bytes at equal
	// SSIMULACRA2, for up to ~45 % more encode CPU. A spec asking for
	// progressive gets it either way.
	Progressive bool
	// FitLuma fits the luma of 4:2:0 JPEGs of PNG and GIF sources to
	// their decoded chroma (fit_luma.c), so that coloured edges keep their
	// luminance, which plain 4:2:0 darkens. See fitLuma.
	FitLuma bool
}

// fitLuma says whether a JPEG encode of spec, from a source in format
// source ("png", "jpeg", ...), gets fitted luma: where the tuning has it,
// the JPEG's chroma is subsampled, and the source is PNG or GIF. Measured
// at equal SSIMULACRA2 on the reference images, against Debian's libvips
// 8.14 (README, "Savings"): bimg's 400×300 test graphic (coloured text and
// lines) went from 6.1 % to 9.3 % fewer bytes, the five photos by 0.1–1.4
// points (0.4 on average). It costs 13–15 ms of CPU per megapixel. Graphics,
// screenshots and charts come as PNG or GIF; photos mostly come as JPEG (or
// AVIF, HEIF, WebP), and the service's main job, 720 px JPEGs of JPEG
// photos, would take 28 % more CPU (33.6 → 43 ms an image, measured) for
// those few tenths of a point.
func (p *Processor) fitLuma(spec variant.Spec, source string) bool {
	if !p.cfg.JPEG.FitLuma || !graphicSource(source) {
		return false
	}
	switch p.chroma(spec) {
	case C.VIPS_FOREIGN_SUBSAMPLE_ON:
		return true
	case C.VIPS_FOREIGN_SUBSAMPLE_AUTO:
		return spec.Quality < libvipsFullChromaFrom
	}
	return false
}

// quantTable is the quant table for a JPEG of quality q.
func (t JPEGTuning) quantTable(q int) int {
	if t.FineFrom > 0 && q >= t.FineFrom {
		return t.FineQuantTable
	}
	return t.QuantTable
}

// chroma is the libvips chroma mode of a JPEG or AVIF for spec: full
// chroma where the spec asks for it, else the format's rule for its
// quality (the JPEG tuning's; libvips' own for AVIF).
func (p *Processor) chroma(spec variant.Spec) C.int {
	switch {
	case spec.FullChroma:
		return C.VIPS_FOREIGN_SUBSAMPLE_OFF
	case spec.Format == variant.FormatAVIF:
		return C.VIPS_FOREIGN_SUBSAMPLE_AUTO
	}
	return p.cfg.JPEG.subsampling(spec.Quality)
}

// libvipsFullChromaFrom is the quality from which libvips' automatic
// chroma mode keeps a JPEG's or an AVIF's chroma at full resolution.
const libvipsFullChromaFrom = 90

// fullChromaFrom is the quality from which an encode in format f keeps
// full chroma without being asked, for an output of pixels; 0 where a
// spec's FullChroma is not worth a second search. AVIF takes it up to
// avifFullChromaPixels, at the speed by size (6 there) or a faster one.
func (p *Processor) fullChromaFrom(f variant.Format, pixels int) int {
	switch f {
	case variant.FormatJPEG:
		return cmp.Or(p.cfg.JPEG.FullChromaFrom, libvipsFullChromaFrom)
	case variant.FormatAVIF:
		if pixels <= avifFullChromaPixels && p.avifEncoding(pixels).speed >= avifMeasuredSpeed {
			return libvipsFullChromaFrom
		}
	}
	return 0
}

// avifFullChromaPixels bounds the AVIF outputs searched a second time with
// full chroma (where no subsampled quality met the target: charts, coloured
// text, colour noise). Measured at 70 on testimages.ColourNoisePNG, the
// costliest content, at 8 bits: at 1200×800, 593,532 B became 349,588 B
// (−41 %) for 10.4 s of CPU instead of 7.9 ("best", which searches JPEG and
// WebP too, 11.6 s at 1250×800); at 10 bits, 355,317 B for 15.3 s. At
// 1600×1000 it gained as much (−38 %) for 15.1 s instead of 12.8 (8 bits):
// at the edge of the 16 s an AVIF search may take (avifMeasuredBudget).
// Larger outputs keep the first answer; so does a search that has used
// half its time (searchQuality).
const avifFullChromaPixels = 1_000_000

// subsampling is the libvips chroma subsampling mode for a JPEG of quality q.
func (t JPEGTuning) subsampling(q int) C.int {
	switch {
	case t.FullChromaFrom == 0:
		return C.VIPS_FOREIGN_SUBSAMPLE_AUTO
	case q >= t.FullChromaFrom:
		return C.VIPS_FOREIGN_SUBSAMPLE_OFF
	default:
		return C.VIPS_FOREIGN_SUBSAMPLE_ON
	}
}

// avifEncoding is the encoding for an output of pixels: by its size, or at
// the configured speed and 8 bits.
func (p *Processor) avifEncoding(pixels int) avifEncoding {
	if p.cfg.AVIFSpeed == AVIFSpeedBySize {
		return avifEncodingFor(pixels)
	}
	return avifEncoding{speed: p.cfg.AVIFSpeed, bitDepth: 8}
}
