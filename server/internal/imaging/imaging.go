// Package imaging is the only package that talks to libvips (through bimg and
// a few lines of cgo). It implements transform.Processor: read a header,
// resize, orient, convert to sRGB, strip metadata and encode.
//
// Two facts shape it. bimg auto-rotates before it shrinks, which on an
// EXIF-rotated phone photo rotates all 12 MP and re-encodes them before
// shrink-on-load can help; so images with an EXIF orientation go through
// libvips' thumbnail operator (shrink on load, then orient the small result,
// see oriented.go) and all others through bimg with its auto-rotation off.
// And bimg encodes AVIF at speed 0 unless told otherwise, which costs seconds
// per image; the speed is always set here.
package imaging

/*
#cgo pkg-config: vips
#include <vips/vips.h>

static void imgedge_drop_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {}

// imgedge_quiet_warnings drops libvips' warnings (printed straight to
// stderr, they would break the JSON log stream). Errors still surface
// through return values.
static void imgedge_quiet_warnings(void) {
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO, imgedge_drop_log, NULL);
}
*/
import "C"

import (
	"bytes"
	"fmt"
	"math"

	"github.com/h2non/bimg"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/quality"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Config tunes the encoders.
type Config struct {
	// AVIFSpeed is the AV1 encoder speed, 0 (slowest, smallest) to 9 (fastest).
	AVIFSpeed int
	// KeepMetadata keeps EXIF/XMP/IPTC in outputs. By default it is
	// stripped (after converting to sRGB, so colours stay right).
	KeepMetadata bool
}

// Processor implements transform.Processor on libvips.
type Processor struct {
	cfg Config
}

// New returns a processor. It also applies process-wide libvips settings:
// the operation cache is off (it only costs memory for a service that never
// sees the same input twice), and untrusted loaders (for example
// ImageMagick, PDF, FITS) are blocked.
// libvips' warnings (such as "ignoring nclx profile"), printed straight to
// stderr, are dropped so they cannot break the JSON log stream; failures
// still surface as errors.
func New(cfg Config) *Processor {
	C.imgedge_quiet_warnings()
	bimg.VipsCacheSetMax(0)
	bimg.VipsCacheSetMaxMem(0)
	C.vips_block_untrusted_set(C.TRUE)
	return &Processor{cfg: cfg}
}

// Version is the libvips version, for example "8.14.1".
func Version() string { return bimg.VipsVersion }

// supported are the input formats this service decodes.
var supported = map[bimg.ImageType]string{
	bimg.JPEG: "jpeg",
	bimg.PNG:  "png",
	bimg.WEBP: "webp",
	bimg.AVIF: "avif",
	bimg.HEIF: "heif",
	bimg.GIF:  "gif",
}

// Probe reads an image's header: format, stored dimensions, EXIF
// orientation and alpha. It does not decode pixels.
func (p *Processor) Probe(data []byte) (transform.ImageInfo, error) {
	typ := bimg.DetermineImageType(data)
	name, ok := supported[typ]
	if !ok {
		return transform.ImageInfo{}, fmt.Errorf("%w: not a JPEG, PNG, WebP, AVIF, HEIF or GIF image", transform.ErrUnsupportedImage)
	}
	if typ == bimg.JPEG && truncatedJPEG(data) {
		return transform.ImageInfo{}, fmt.Errorf("%w: the JPEG is truncated (no end-of-image marker after its last scan)", transform.ErrUnsupportedImage)
	}
	md, err := bimg.Metadata(data)
	if err != nil {
		return transform.ImageInfo{}, fmt.Errorf("%w: reading the %s header: %v", transform.ErrUnsupportedImage, name, err)
	}
	if md.Size.Width <= 0 || md.Size.Height <= 0 {
		return transform.ImageInfo{}, fmt.Errorf("%w: the %s header has no dimensions", transform.ErrUnsupportedImage, name)
	}
	return transform.ImageInfo{
		Format:      name,
		Width:       md.Size.Width,
		Height:      md.Size.Height,
		Orientation: md.Orientation,
		Alpha:       md.Alpha,
	}, nil
}

// truncatedJPEG reports whether a JPEG lacks an end-of-image marker after its
// last start-of-scan. libvips decodes such files with a grey bottom and only a
// warning; a service must refuse them instead. Inside entropy-coded data 0xFF
// is always stuffed, so neither marker appears by accident.
func truncatedJPEG(data []byte) bool {
	// Fast path: almost every JPEG ends with its EOI (possibly padded); a
	// truncated one cannot, since 0xFF 0xD9 never occurs inside scan data.
	tail := bytes.TrimRight(data[max(0, len(data)-64):], "\x00")
	if bytes.HasSuffix(tail, []byte{0xFF, 0xD9}) {
		return false
	}
	sos := bytes.LastIndex(data, []byte{0xFF, 0xDA})
	eoi := bytes.LastIndex(data, []byte{0xFF, 0xD9})
	return sos < 0 || eoi < sos
}

// Process transforms data as op says.
func (p *Processor) Process(data []byte, op transform.Operation) (transform.Output, error) {
	return p.process(data, op, false)
}

// process transforms data; intermediate encodes an uncompressed TIFF that
// keeps every pixel (and alpha) for further encodes.
func (p *Processor) process(data []byte, op transform.Operation, intermediate bool) (transform.Output, error) {
	spec, src := op.Spec, op.Source
	if src.Orientation > 1 && src.Orientation <= 8 {
		return p.processOriented(data, spec, src, intermediate)
	}
	outW, outH := targetSize(spec, src.Width, src.Height)
	opts := p.baseOptions(spec, src)
	if needsICC(data) {
		opts.OutputICC = "srgb" // built-in profile: convert before stripping
	}
	if intermediate {
		opts.Type, opts.Background = bimg.TIFF, bimg.Color{}
	}
	switch spec.Fit {
	case variant.FitCover:
		opts.Width, opts.Height, opts.Crop, opts.Gravity = outW, outH, true, bimg.GravityCentre
	default:
		opts.Width, opts.Height, opts.Force = outW, outH, true
	}
	return encode(data, opts)
}

// baseOptions are bimg's encoder settings for a spec.
func (p *Processor) baseOptions(spec variant.Spec, src transform.ImageInfo) bimg.Options {
	o := bimg.Options{
		NoAutoRotate: true, // orientation is handled by Process, after the shrink
		// bimg sizes shrink-on-load by the interpolator's window: with its
		// default bicubic it shrinks a 4.2× reduction by only 2 on load and
		// leaves the rest to a costly reduce. Bilinear's small window lets
		// it shrink by 4 in the JPEG decoder. Downscaling still goes through
		// vips_reduce (Lanczos 3); the interpolator only serves upscaling.
		Interpolator:   bimg.Bilinear,
		StripMetadata:  !p.cfg.KeepMetadata,
		Interpretation: bimg.InterpretationSRGB,
		Quality:        spec.Quality,
		Interlace:      spec.Progressive,
		Speed:          p.cfg.AVIFSpeed,
	}
	switch spec.Format {
	case variant.FormatWebP:
		o.Type = bimg.WEBP
	case variant.FormatAVIF:
		o.Type = bimg.AVIF
	case variant.FormatPNG:
		o.Type = bimg.PNG
		o.Compression = 6
		o.Speed = 0
	default:
		o.Type = bimg.JPEG
		if src.Alpha {
			o.Background = bimg.Color{R: 255, G: 255, B: 255}
		}
	}
	return o
}

func encode(data []byte, opts bimg.Options) (transform.Output, error) {
	out, err := bimg.Resize(data, opts)
	if err != nil {
		return transform.Output{}, fmt.Errorf("%w: %v", transform.ErrUnsupportedImage, err)
	}
	size, err := bimg.Size(out)
	if err != nil {
		return transform.Output{}, fmt.Errorf("imaging: reading back the encoded image: %w", err)
	}
	return transform.Output{Data: out, Width: size.Width, Height: size.Height}, nil
}

// targetSize computes the output size of spec applied to an upright w×h image.
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

// selfTestJPEG is an 8×8 grey baseline JPEG.
var selfTestJPEG = []byte{
	0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07,
	0x07, 0x09, 0x09, 0x08, 0x0a, 0x0c, 0x14, 0x0d, 0x0c, 0x0b, 0x0b, 0x0c, 0x19, 0x12, 0x13, 0x0f,
	0x14, 0x1d, 0x1a, 0x1f, 0x1e, 0x1d, 0x1a, 0x1c, 0x1c, 0x20, 0x24, 0x2e, 0x27, 0x20, 0x22, 0x2c,
	0x23, 0x1c, 0x1c, 0x28, 0x37, 0x29, 0x2c, 0x30, 0x31, 0x34, 0x34, 0x34, 0x1f, 0x27, 0x39, 0x3d,
	0x38, 0x32, 0x3c, 0x2e, 0x33, 0x34, 0x32, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08,
	0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xff, 0xc4, 0x00, 0x14,
	0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, 0x2a, 0x9f, 0xff, 0xd9,
}

// SelfTest decodes, resizes and encodes a tiny image: readiness uses it to
// prove libvips works.
func (p *Processor) SelfTest() error {
	info, err := p.Probe(selfTestJPEG)
	if err != nil {
		return fmt.Errorf("libvips self-test: %w", err)
	}
	out, err := p.Process(selfTestJPEG, transform.Operation{Spec: variant.Spec{Width: 4, Fit: variant.FitInside, Format: variant.FormatPNG}, Source: info})
	if err != nil || out.Width != 4 {
		return fmt.Errorf("libvips self-test: %v (got %d px wide)", err, out.Width)
	}
	return nil
}

// scorePixels bounds the pixels SSIM is computed on: larger images are
// compared on their central region, at full resolution.
const scorePixels = 1_000_000

// Prepare decodes, orients and resizes once into a lossless intermediate,
// and keeps its luma for scoring.
func (p *Processor) Prepare(data []byte, op transform.Operation) (transform.Prepared, error) {
	mid, err := p.process(data, op, true)
	if err != nil {
		return nil, err
	}
	ref, err := lumaPlane(mid.Data, scorePixels)
	if err != nil {
		return nil, err
	}
	return &prepared{p: p, pixels: mid.Data, ref: ref, alpha: op.Source.Alpha}, nil
}

type prepared struct {
	p      *Processor
	pixels []byte // uncompressed TIFF of the resized image
	ref    quality.Plane
	alpha  bool
}

// Encode encodes the prepared pixels.
func (pr *prepared) Encode(spec variant.Spec) (transform.Output, error) {
	opts := pr.p.baseOptions(spec, transform.ImageInfo{Alpha: pr.alpha})
	opts.OutputICC = "" // the intermediate is sRGB already
	return encode(pr.pixels, opts)
}

// Score compares an encoded image with the prepared pixels (MS-SSIM on luma).
func (pr *prepared) Score(encoded []byte) (float64, error) {
	cand, err := lumaPlane(encoded, scorePixels)
	if err != nil {
		return 0, err
	}
	return quality.MSSSIM(pr.ref, cand)
}
