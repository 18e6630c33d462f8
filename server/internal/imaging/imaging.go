// Package imaging is the only package that talks to libvips: bimg for the
// library's start-up and format sniffing, and a small C pipeline
// (pipeline.c) for the work itself, because the service needs what bimg's
// Resize does not give: a failure policy that refuses truncated and damaged
// data instead of storing grey or black bands, shrink-on-load sized per axis
// (bimg's shrinks both axes alike and libvips aborts the process when a thin
// image shrinks to nothing), resampling with premultiplied alpha, EXIF
// orientation applied after the shrink rather than before it, metadata
// removed for every encoder, and the AVIF speed always set. It builds
// against the libvips the Makefile installs (sharp's 8.18 build, with
// mozjpeg) or any other libvips pkg-config finds.
package imaging

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include <vips/vips.h>
#include "pipeline.h"
*/
import "C"

import (
	"bytes"
	_ "embed" // the HEVC probe image
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/h2non/bimg"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/jpegscan"
	"github.com/imgedge/imgedge/server/internal/quality"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Config tunes the encoders.
type Config struct {
	// AVIFSpeed is the AV1 encoder speed, 0 (slowest, smallest) to 9
	// (fastest), or AVIFSpeedBySize.
	AVIFSpeed int
	// WebPEffort is libwebp's method, 0 (fastest) to 6, or WebPEffortBySize.
	WebPEffort int
	// KeepMetadata keeps EXIF/XMP/IPTC in outputs. By default it is
	// removed (after converting to sRGB, so colours stay right).
	KeepMetadata bool
	// JPEG tunes mozjpeg; the zero value is libjpeg's plain encoder.
	JPEG JPEGTuning
}

// AVIFSpeedBySize picks the AV1 speed from the output's size (avifSpeedFor).
const AVIFSpeedBySize = -1

// avifSpeedFor is the slowest AV1 speed whose encode of pixels stays
// within about avifEncodeBudget of CPU on one core for the costliest
// content measured on the project's machine (libvips 8.18, aom): a detailed
// photo at the qualities auto-quality picks (q60–65) costs per megapixel
// 2.6 s at speed 6, 1.2 s at 8 and 0.35 s at 9 — typical photos at q50 five
// times less (0.48, 0.13, 0.06 s). Speed 7 was no smaller than 8. Speed 6
// needs 3–12 % fewer bytes than 8 at the same SSIMULACRA2, so it is used
// where even the worst case is cheap: up to 3 MP; 8 up to 6.5 MP; 9 above,
// which keeps the largest source allowed (50 MP) under ~18 s in the worst
// case, inside the default 30 s process timeout with one job per core.
func avifSpeedFor(pixels int) int {
	mp := float64(pixels) / 1e6
	for _, s := range []struct {
		speed    int
		secPerMP float64 // worst case measured
	}{{6, 2.6}, {8, 1.2}} {
		if mp*s.secPerMP <= avifEncodeBudget.Seconds() {
			return s.speed
		}
	}
	return 9
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

// avifEncodeBudget bounds one AVIF encode's CPU when the speed is by size.
const avifEncodeBudget = 8 * time.Second

// A by-size speed is sized for the costliest content, and most photos cost
// a fifth of it: an auto-quality search, which encodes a mosaic of the
// image's tiles first, measures what this content costs and encodes at
// avifMeasuredSpeed when that fits avifMeasuredBudget (settleAVIFSpeed).
// Speed 6 needs 6–12 % fewer bytes than 9 at the same SSIMULACRA2 on the
// corpus's 6–24 MP photos.
const (
	avifMeasuredSpeed  = 6
	avifMeasuredBudget = 16 * time.Second
	// searchTrials is the most trials a search usually makes (3–4 at worst).
	searchTrials = 4
)

// avifSpeed6PerMP bounds the CPU a megapixel costs at speed 6 from the bits
// per pixel an encode of the same content takes at a faster speed and the
// same quality: above every measurement on this project's machine (6–24 MP
// photos of the corpus 0.34–0.74 s at 0.2–0.7 bits, small images 0.8–1.3 s
// at 0.8–1.9, noise 0.66–1.42 s at 2.1–7.9).
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
// saved 8.5 % (README, "Savings").
var MozJPEG = JPEGTuning{Trellis: true, Deringing: true, QuantTable: 5, FineQuantTable: 2, FineFrom: 88, FullChromaFrom: 95}

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
}

// quantTable is the quant table for a JPEG of quality q.
func (t JPEGTuning) quantTable(q int) int {
	if t.FineFrom > 0 && q >= t.FineFrom {
		return t.FineQuantTable
	}
	return t.QuantTable
}

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

// Processor implements transform.Processor on libvips.
type Processor struct {
	cfg Config
}

// New returns a processor. It also applies process-wide libvips settings:
// the operation cache is off (it only costs memory for a service that never
// sees the same input twice), untrusted loaders (for example ImageMagick,
// PDF, FITS) are blocked, and libvips' warnings, printed straight to stderr,
// are dropped so they cannot break the JSON log stream.
func New(cfg Config) *Processor {
	C.imgedge_init()
	return &Processor{cfg: cfg}
}

// Version is the version of the libvips the process runs, for example
// "8.18.7" (asked at run time: a header's constant says what was compiled
// against, which a cached build may not match).
func Version() string { return C.GoString(C.vips_version_string()) }

// supported are the input formats this service decodes.
var supported = map[bimg.ImageType]string{
	bimg.JPEG: "jpeg",
	bimg.PNG:  "png",
	bimg.WEBP: "webp",
	bimg.AVIF: "avif",
	bimg.HEIF: "heif",
	bimg.GIF:  "gif",
}

// maxSide is the largest side each output format can store.
var maxSide = map[variant.Format]int{
	variant.FormatJPEG: 65_500,
	variant.FormatWebP: 16_383,
	variant.FormatAVIF: 16_384, // libheif's default security limit
	variant.FormatPNG:  1 << 30,
}

// vipsError returns libvips' error buffer, one line per distinct message
// joined by "; ", and clears it. A saver's "unable to write to target" is
// left out: writing to memory fails only when what feeds it failed. When a
// loader gives up on a warning (the failure policy, see pipeline.c), that
// can leave nothing, as the warning itself goes to the log handler, which
// drops it. That case says so.
func vipsError() string {
	msg := C.GoString(C.vips_error_buffer())
	C.vips_error_clear()
	var lines []string
	for l := range strings.Lines(msg) {
		l = strings.TrimSpace(l)
		if l != "" && !strings.Contains(l, "unable to write to target") && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "the decoder stopped on damaged or truncated data"
	}
	return strings.Join(lines, "; ")
}

// Probe reads an image's header: format, stored dimensions, bands, sample
// size, EXIF orientation and alpha; for a JPEG, also its structure, which
// says what decoding it holds and costs (a JPEG in more than maxJPEGScans
// scans is refused). It does not decode pixels.
func (p *Processor) Probe(data []byte) (transform.ImageInfo, error) {
	name, ok := supported[bimg.DetermineImageType(data)]
	if !ok {
		return transform.ImageInfo{}, fmt.Errorf("%w: not a JPEG, PNG, WebP, AVIF, HEIF or GIF image", transform.ErrUnsupportedImage)
	}
	var h C.imgedge_header
	if C.imgedge_probe(unsafe.Pointer(&data[0]), C.size_t(len(data)), &h) != 0 {
		return transform.ImageInfo{}, fmt.Errorf("%w: reading the %s header: %s", transform.ErrUnsupportedImage, name, vipsError())
	}
	if h.width <= 0 || h.height <= 0 {
		return transform.ImageInfo{}, fmt.Errorf("%w: the %s header has no dimensions", transform.ErrUnsupportedImage, name)
	}
	if C.GoString(&h.compression[0]) == "hevc" && !decodesHEVC() {
		return transform.ImageInfo{}, fmt.Errorf("%w: a HEIC image (HEIF coded with HEVC), which this service's libvips cannot decode (it has no HEVC decoder): store it as JPEG, PNG, WebP or AVIF", transform.ErrUnsupportedImage)
	}
	orientation := int(h.orientation)
	if orientation < 1 || orientation > 8 {
		orientation = 1
	}
	info := transform.ImageInfo{
		Format:      name,
		Width:       int(h.width),
		Height:      int(h.height),
		Bands:       int(h.bands),
		SampleBytes: int(h.sample_bytes),
		Orientation: orientation,
		Alpha:       h.alpha != 0,
	}
	if name == "jpeg" {
		st, err := jpegscan.Read(data)
		if err != nil {
			return transform.ImageInfo{}, fmt.Errorf("%w: %w", transform.ErrUnsupportedImage, err)
		}
		if st.Scans > maxJPEGScans {
			return transform.ImageInfo{}, fmt.Errorf("%w: the JPEG's data comes in %d scans, and each is a pass over the whole image: this service decodes up to %d (encoders write at most a few dozen)",
				transform.ErrUnsupportedImage, st.Scans, maxJPEGScans)
		}
		info.DecodeBuffer = st.CoefficientBytes()
	}
	if name == "gif" {
		// The decoder keeps the whole frame, RGBA, while libvips reads it.
		info.DecodeBuffer = info.Pixels() * 4
	}
	return info, nil
}

// maxJPEGScans is the most scans a JPEG may come in. A progressive JPEG's
// decoder walks every block of the whole image in every scan, and the
// standard allows thousands of valid scans of a few bytes each: a 150 KB
// file of 2,649 scans costs 4 s of CPU at 12 MP (libjpeg-turbo's
// "LJT-01-003"; the libvips pipeline cannot be interrupted inside the
// decoder, so no timeout would stop it). Encoders write 4–14 (mozjpeg's
// optimised progressions here, libjpeg's default 10), and libjpeg's own
// scan scripts stop at 100.
const maxJPEGScans = 100

// plan is one run of the pipeline: the C options and what they imply.
type plan struct {
	opts   C.imgedge_opts
	shrink int // JPEG shrink-on-load factor
}

// plan sizes the output and the shrink-on-load, and checks that the output
// format can hold the result.
func (p *Processor) plan(spec variant.Spec, src transform.ImageInfo, format C.int) (plan, error) {
	upW, upH := src.Width, src.Height
	if src.Orientation >= 5 { // 90° turns swap the sides
		upW, upH = upH, upW
	}
	outW, outH := targetSize(spec, upW, upH)
	if format != C.IMGEDGE_RAW {
		if limit := maxSide[spec.Format]; outW > limit || outH > limit {
			return plan{}, fmt.Errorf("%w: the variant would be %d×%d pixels, and %s stores at most %d on a side: ask for a smaller size or another format",
				transform.ErrInvalidArgument, outW, outH, spec.Format, limit)
		}
	}
	pl := plan{shrink: shrinkOnLoad(src, upW, upH, outW, outH)}
	pl.opts = C.imgedge_opts{
		width:         C.int(outW),
		height:        C.int(outH),
		shrink:        C.int(pl.shrink),
		format:        format,
		quality:       C.int(spec.Quality),
		interlace:     cbool(spec.Progressive || p.cfg.JPEG.Progressive),
		effort:        C.int(9 - p.avifSpeed(outW*outH)),
		webp_effort:   C.int(p.webpEffort(outW * outH)),
		keep_metadata: cbool(p.cfg.KeepMetadata),
		trellis:       cbool(p.cfg.JPEG.Trellis),
		deringing:     cbool(p.cfg.JPEG.Deringing),
		quant_table:   C.int(p.cfg.JPEG.quantTable(spec.Quality)),
		subsample:     p.cfg.JPEG.subsampling(spec.Quality),
		flatten:       cbool(format == C.IMGEDGE_JPEG),
	}
	if spec.Fit == variant.FitCover {
		pl.opts.cover = 1
	}
	return pl, nil
}

// avifSpeed is the configured AV1 speed, or the one for an output of pixels.
func (p *Processor) avifSpeed(pixels int) int {
	if p.cfg.AVIFSpeed == AVIFSpeedBySize {
		return avifSpeedFor(pixels)
	}
	return p.cfg.AVIFSpeed
}

// shrinkOnLoad is the largest JPEG DCT scaling (8, 4 or 2) that keeps both
// sides of the decoded image at least as large as the output's: a thin image
// is limited by its thin side, so it never shrinks to nothing.
func shrinkOnLoad(src transform.ImageInfo, upW, upH, outW, outH int) int {
	if src.Format != "jpeg" {
		return 1
	}
	factor := math.Min(float64(upW)/float64(outW), float64(upH)/float64(outH))
	for _, s := range []int{8, 4, 2} {
		if factor >= float64(s) {
			return s
		}
	}
	return 1
}

func formatCode(f variant.Format) C.int {
	switch f {
	case variant.FormatWebP:
		return C.IMGEDGE_WEBP
	case variant.FormatAVIF:
		return C.IMGEDGE_AVIF
	case variant.FormatPNG:
		return C.IMGEDGE_PNG
	}
	return C.IMGEDGE_JPEG
}

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
		// (4.3–24 MP, speeds 8 and 9), 12 beyond the general 8.
		work += outPixels * 12
	}
	if op.Spec.AutoQuality {
		// The kept intermediate, and the metric's planes for what it
		// scores (the whole image, or the mosaic of tiles when that is
		// smaller), with Go's heap headroom: ~110 bytes a scored pixel.
		scored := min(outPixels, int64(mosaicPixels(scoreTiles)))
		work += outPixels*4 + scored*110
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

// Process transforms data as op says.
func (p *Processor) Process(data []byte, op transform.Operation) (transform.Output, error) {
	pl, err := p.plan(op.Spec, op.Source, formatCode(op.Spec.Format))
	if err != nil {
		return transform.Output{}, err
	}
	out, _, err := execute(data, &pl.opts)
	return out, err
}

// execute runs the pipeline and copies its result into Go memory; it also
// returns the result's number of bands.
func execute(data []byte, opts *C.imgedge_opts) (transform.Output, int, error) {
	if len(data) == 0 {
		return transform.Output{}, 0, fmt.Errorf("%w: the image is empty (0 bytes)", transform.ErrUnsupportedImage)
	}
	var out unsafe.Pointer
	var outLen C.size_t
	var w, h, bands C.int
	if C.imgedge_process(unsafe.Pointer(&data[0]), C.size_t(len(data)), opts, &out, &outLen, &w, &h, &bands) != 0 {
		return transform.Output{}, 0, fmt.Errorf("%w: %s", transform.ErrUnsupportedImage, vipsError())
	}
	defer C.g_free(C.gpointer(out))
	return transform.Output{Data: C.GoBytes(out, C.int(outLen)), Width: int(w), Height: int(h)}, int(bands), nil
}

// targetSize computes the output size of spec applied to an upright w×h
// image. Every side is at least one pixel.
func targetSize(spec variant.Spec, w, h int) (int, int) {
	switch {
	case spec.Width == 0 && spec.Height == 0:
		return w, h
	case spec.Fit == variant.FitFill:
		return spec.Width, spec.Height
	case spec.Fit == variant.FitCover:
		// Cover never enlarges: a smaller source keeps its size within the box.
		return min(spec.Width, w), min(spec.Height, h)
	}
	scale := math.Inf(1)
	if spec.Width > 0 {
		scale = float64(spec.Width) / float64(w)
	}
	if spec.Height > 0 {
		scale = math.Min(scale, float64(spec.Height)/float64(h))
	}
	scale = math.Min(scale, 1) // never enlarge
	return max(1, int(math.Round(float64(w)*scale))), max(1, int(math.Round(float64(h)*scale)))
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// hevcProbe is a 16×16 black HEIC (HEVC-coded HEIF, made by libheif with
// x265).
//
//go:embed hevc-probe.heic
var hevcProbe []byte

// decodesHEVC reports whether libvips can decode HEVC, the codec of the
// HEIC photos phones take. The build the Makefile installs (sharp's) has no
// HEVC decoder, Debian's has one (libde265). A HEIC's header reads either
// way, and the decode would fail only once the job had been admitted, with
// libheif's plugin message: Probe asks this instead, once per process.
var decodesHEVC = sync.OnceValue(func() bool {
	opts := C.imgedge_opts{width: 16, height: 16, shrink: 1, format: C.IMGEDGE_RAW}
	_, _, err := execute(hevcProbe, &opts)
	return err == nil
})

// selfTestJPEG is an 8×8 grey baseline JPEG, made by the standard library's
// encoder so that libvips decodes it without a single warning.
var selfTestJPEG = func() []byte {
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(16 * (i % 8))
	}
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		panic(err)
	}
	return buf.Bytes()
}()

// SelfTest decodes, resizes and encodes a tiny image: readiness uses it to
// prove libvips works.
func (p *Processor) SelfTest() error {
	info, err := p.Probe(selfTestJPEG)
	if err != nil {
		return fmt.Errorf("libvips self-test: %w", err)
	}
	out, err := p.Process(selfTestJPEG, transform.Operation{Spec: variant.Spec{Width: 4, Fit: variant.FitInside, Format: variant.FormatPNG}, Source: info})
	if err != nil || out.Width != 4 {
		return fmt.Errorf("libvips self-test: %w (got %d px wide)", err, out.Width)
	}
	return nil
}

// Scoring looks at tiles of scoreTile×scoreTile pixels (the smallest size
// SSIMULACRA2 sees at all six scales), at most scoreTiles of them spread
// over the image, so its cost is bounded whatever the image's size while
// every region has a say; the worst tile decides. Tiles start on multiples
// of tileAlign, a multiple of every codec's block (JPEG's 8 and 16, WebP's
// 16, AV1's 64-pixel superblocks), so a tile encoded alone in the search's
// mosaic is cut into the same blocks as in the whole image.
const (
	scoreTile  = 256
	scoreTiles = 8
	tileAlign  = 64
)

// Prepare decodes, orients and resizes once into 8-bit sRGB pixels (alpha
// kept), and prepares SSIMULACRA2 references of what a viewer sees (alpha
// flattened onto white) for scoring.
func (p *Processor) Prepare(data []byte, op transform.Operation) (transform.Prepared, error) {
	pl, err := p.plan(op.Spec, op.Source, C.IMGEDGE_RAW)
	if err != nil {
		return nil, err
	}
	mid, bands, err := execute(data, &pl.opts)
	if err != nil {
		return nil, err
	}
	pr := &prepared{p: p, pixels: mid.Data, width: mid.Width, height: mid.Height, bands: bands}
	if pr.width < 8 || pr.height < 8 {
		return pr, nil // too small to score: Score says so
	}
	rects := scoreTilesOf(pr.width, pr.height)
	tiles, err := pr.viewed(mid.Data, pr.width, pr.height, pr.bands, rects)
	if err != nil {
		return nil, err
	}
	for i, r := range rects {
		ref, err := quality.NewSSIMULACRA2Reference(tiles[i])
		if err != nil {
			return nil, err
		}
		pr.tiles = append(pr.tiles, scoredTile{rect: r, ref: ref})
	}
	if len(rects) > 1 && mosaicPixels(len(rects)) < pr.width*pr.height {
		pr.buildMosaic()
	}
	return pr, nil
}

// buildMosaic copies the scored tiles side by side into one small image,
// mosaicCols to a row, each with mosaicMargin pixels of its surroundings
// (edge pixels repeated where the image ends), so that codecs see each
// tile in context: the search encodes and scores it instead of the whole
// image, so a quality step costs the same for a 12 MP output as for a 1 MP
// one.
func (pr *prepared) buildMosaic() {
	cols, rows := mosaicGrid(len(pr.tiles))
	pr.mw, pr.mh = cols*mosaicCell, rows*mosaicCell
	pr.mosaic = make([]byte, pr.mw*pr.mh*pr.bands)
	for i := range cols * rows {
		t := &pr.tiles[i%len(pr.tiles)] // spare cells repeat the first tiles, never scored
		x0, y0 := i%cols*mosaicCell, i/cols*mosaicCell
		if i < len(pr.tiles) {
			t.inMosaic = image.Rect(0, 0, scoreTile, scoreTile).Add(image.Pt(x0+mosaicMargin, y0+mosaicMargin))
		}
		for y := range mosaicCell {
			sy := min(max(t.rect.Min.Y-mosaicMargin+y, 0), pr.height-1)
			dst := pr.mosaic[((y0+y)*pr.mw+x0)*pr.bands:][:mosaicCell*pr.bands]
			row := pr.pixels[sy*pr.width*pr.bands:][:pr.width*pr.bands]
			for x := range mosaicCell {
				sx := min(max(t.rect.Min.X-mosaicMargin+x, 0), pr.width-1)
				copy(dst[x*pr.bands:(x+1)*pr.bands], row[sx*pr.bands:])
			}
		}
	}
}

// The mosaic's layout: mosaicCols cells to a row, each a tile with
// mosaicMargin pixels of context, a multiple of tileAlign so the tile keeps
// its block alignment.
const (
	mosaicCols   = 4
	mosaicMargin = tileAlign
	mosaicCell   = scoreTile + 2*mosaicMargin
)

// mosaicGrid is the columns and rows of the mosaic of n tiles.
func mosaicGrid(n int) (cols, rows int) {
	cols = min(n, mosaicCols)
	return cols, (n + cols - 1) / cols
}

// mosaicPixels is the size of the mosaic of n tiles: below the image's
// own, a trial on it is cheaper than on the whole image.
func mosaicPixels(n int) int {
	cols, rows := mosaicGrid(n)
	return cols * rows * mosaicCell * mosaicCell
}

// scoreTilesOf places the tiles scored for a w×h image: the whole image
// when it is small, otherwise up to scoreTiles tiles, one centred in each
// cell of a grid over the image.
func scoreTilesOf(w, h int) []image.Rectangle {
	if w*h <= scoreTiles*scoreTile*scoreTile || w < scoreTile || h < scoreTile {
		return []image.Rectangle{image.Rect(0, 0, w, h)}
	}
	cols := max(1, min(scoreTiles, int(math.Round(math.Sqrt(float64(scoreTiles)*float64(w)/float64(h))))))
	rows := max(1, min(scoreTiles/cols, h/scoreTile))
	cols = min(cols, w/scoreTile)
	var tiles []image.Rectangle
	for r := range rows {
		for c := range cols {
			cx, cy := (2*c+1)*w/(2*cols), (2*r+1)*h/(2*rows)
			x0, y0 := min(max(0, cx-scoreTile/2), w-scoreTile), min(max(0, cy-scoreTile/2), h-scoreTile)
			x0, y0 = x0/tileAlign*tileAlign, y0/tileAlign*tileAlign
			tiles = append(tiles, image.Rect(x0, y0, x0+scoreTile, y0+scoreTile))
		}
	}
	return tiles
}

type prepared struct {
	p                    *Processor
	pixels               []byte // 8-bit sRGB, alpha kept
	width, height, bands int
	tiles                []scoredTile
	// mosaic holds the scored tiles side by side (mw×mh, same bands) when
	// that is smaller than the image; nil otherwise.
	mosaic []byte
	mw, mh int
	// avifSpeed is the AV1 speed of every AVIF encode, trial or final,
	// once the first trial has settled it (avifSettled).
	avifSpeed   int
	avifSettled bool
}

// scoredTile is one region of the reference, ready for scoring.
type scoredTile struct {
	rect     image.Rectangle // in the image
	inMosaic image.Rectangle // in the mosaic, when there is one
	ref      *quality.SSIMULACRA2Reference
}

// Encode encodes the prepared pixels.
func (pr *prepared) Encode(spec variant.Spec) (transform.Output, error) {
	data, err := pr.encode(spec, pr.pixels, pr.width, pr.height)
	return transform.Output{Data: data, Width: pr.width, Height: pr.height}, err
}

// encode encodes w×h raw pixels of the prepared bands.
func (pr *prepared) encode(spec variant.Spec, pixels []byte, w, h int) ([]byte, error) {
	pl, err := pr.p.plan(spec, transform.ImageInfo{Width: w, Height: h}, formatCode(spec.Format))
	if err != nil {
		return nil, err
	}
	// The mosaic is encoded with the whole image's speed, as it stands for it.
	pl.opts.effort = C.int(9 - pr.wholeAVIFSpeed())
	pl.opts.webp_effort = C.int(pr.p.webpEffort(pr.width * pr.height))
	var out unsafe.Pointer
	var outLen C.size_t
	if C.imgedge_encode_raw(unsafe.Pointer(&pixels[0]), C.size_t(len(pixels)), C.int(w), C.int(h), C.int(pr.bands), &pl.opts, &out, &outLen) != 0 {
		return nil, fmt.Errorf("%w: encoding: %s", transform.ErrUnsupportedImage, vipsError())
	}
	defer C.g_free(C.gpointer(out))
	return C.GoBytes(out, C.int(outLen)), nil
}

// Score is the SSIMULACRA2 score of an encoded image against the prepared
// pixels, both as a viewer sees them: the worst of the scored tiles.
func (pr *prepared) Score(encoded []byte) (float64, error) {
	if len(pr.tiles) == 0 {
		return 0, fmt.Errorf("%w: %d×%d", transform.ErrCannotScore, pr.width, pr.height)
	}
	return pr.worst(encoded, pr.width, pr.height, func(t scoredTile) image.Rectangle { return t.rect })
}

// Trial encodes at spec and scores what the search judges: the whole image
// when there is no mosaic (the output is then returned, ready to serve), or
// else the mosaic of the tiles in their context (no output: Encode the
// chosen quality). JPEG cuts the mosaic into the very blocks of the whole
// image (identical scores) and AV1 nearly so (within 0.3).
func (pr *prepared) Trial(spec variant.Spec) (transform.Output, float64, error) {
	if len(pr.tiles) == 0 {
		return transform.Output{}, 0, fmt.Errorf("%w: %d×%d", transform.ErrCannotScore, pr.width, pr.height)
	}
	if pr.mosaic == nil || spec.Format == variant.FormatWebP {
		// WebP picks its quantisers per segment from statistics of the
		// whole picture, so a mosaic is judged on other terms (scores
		// 0.3–3 lower, measured); it is cheap enough to encode whole.
		out, err := pr.Encode(spec)
		if err != nil {
			return transform.Output{}, 0, err
		}
		score, err := pr.Score(out.Data)
		return out, score, err
	}
	var data []byte
	var err error
	if spec.Format == variant.FormatAVIF && !pr.avifSettled {
		data, err = pr.settleAVIFSpeed(spec)
	} else {
		data, err = pr.encode(spec, pr.mosaic, pr.mw, pr.mh)
	}
	if err != nil {
		return transform.Output{}, 0, err
	}
	score, err := pr.worst(data, pr.mw, pr.mh, func(t scoredTile) image.Rectangle { return t.inMosaic })
	return transform.Output{}, score, err
}

// wholeAVIFSpeed is the AV1 speed for the whole image: the settled one, or
// the configured one (by the output's size unless set).
func (pr *prepared) wholeAVIFSpeed() int {
	if pr.avifSettled {
		return pr.avifSpeed
	}
	return pr.p.avifSpeed(pr.width * pr.height)
}

// settleAVIFSpeed encodes the mosaic for an AVIF search's first trial at
// the speed the output's size allows, then settles the speed of the search
// and of its final encode: avifMeasuredSpeed when, by the bits that encode
// took (at the quality the search starts from, usually near its answer),
// the search's trials and the final encode at that speed fit
// avifMeasuredBudget (the trial is then encoded again at it), or else the
// size's. A configured speed is kept as it is.
func (pr *prepared) settleAVIFSpeed(spec variant.Spec) ([]byte, error) {
	pr.avifSpeed, pr.avifSettled = pr.wholeAVIFSpeed(), true
	data, err := pr.encode(spec, pr.mosaic, pr.mw, pr.mh)
	if err != nil || pr.p.cfg.AVIFSpeed != AVIFSpeedBySize || pr.avifSpeed <= avifMeasuredSpeed {
		return data, err
	}
	bitsPerPixel := float64(8*len(data)) / float64(pr.mw*pr.mh)
	megapixels := float64(pr.width*pr.height+searchTrials*pr.mw*pr.mh) / 1e6
	if time.Duration(megapixels*float64(avifSpeed6PerMP(bitsPerPixel))) > avifMeasuredBudget {
		return data, nil
	}
	pr.avifSpeed = avifMeasuredSpeed
	return pr.encode(spec, pr.mosaic, pr.mw, pr.mh)
}

// worst decodes an encoded w×h image as a viewer sees it and scores the
// region of each tile where at says it lies: the worst tile's score.
func (pr *prepared) worst(encoded []byte, w, h int, at func(scoredTile) image.Rectangle) (float64, error) {
	rects := make([]image.Rectangle, len(pr.tiles))
	for i, t := range pr.tiles {
		rects[i] = at(t)
	}
	cands, err := pr.viewed(encoded, w, h, 0, rects)
	if err != nil {
		return 0, err
	}
	worst := math.Inf(1)
	for i, t := range pr.tiles {
		s, err := t.ref.Score(cands[i])
		if err != nil {
			return 0, err
		}
		worst = min(worst, s)
	}
	return worst, nil
}

// viewed decodes an encoded image (bands 0), or raw pixels of the given
// bands, w×h, to what a viewer sees — 8-bit sRGB, alpha flattened onto
// white — and copies out the given regions only, so scoring a large image
// never holds it twice.
func (pr *prepared) viewed(data []byte, w, h, bands int, rects []image.Rectangle) ([]*image.NRGBA, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: nothing to score", transform.ErrUnsupportedImage)
	}
	var rw, rh C.int
	if bands > 0 {
		rw, rh = C.int(w), C.int(h)
	}
	var out unsafe.Pointer
	var outLen C.size_t
	var ow, oh C.int
	if C.imgedge_viewed(unsafe.Pointer(&data[0]), C.size_t(len(data)), rw, rh, C.int(bands), &out, &outLen, &ow, &oh) != 0 {
		return nil, fmt.Errorf("%w: decoding for scoring: %s", transform.ErrUnsupportedImage, vipsError())
	}
	defer C.g_free(C.gpointer(out))
	if int(ow) != w || int(oh) != h || int(outLen) != 3*w*h {
		return nil, fmt.Errorf("imaging: the encoded image is %d×%d, expected %d×%d", ow, oh, w, h)
	}
	rgb := unsafe.Slice((*byte)(out), int(outLen))
	tiles := make([]*image.NRGBA, len(rects))
	for i, r := range rects {
		img := image.NewNRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
		for y := range r.Dy() {
			src := rgb[3*((r.Min.Y+y)*w+r.Min.X):]
			dst := img.Pix[y*img.Stride:]
			for x := range r.Dx() {
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = src[3*x], src[3*x+1], src[3*x+2], 255
			}
		}
		tiles[i] = img
	}
	return tiles, nil
}
