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
#cgo LDFLAGS: -lm
#include <stdlib.h>
#include <vips/vips.h>
#include "pipeline.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/h2non/bimg"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/jpegscan"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Config tunes the encoders.
type Config struct {
	// AVIFSpeed is the AV1 encoder speed, 0 (slowest, smallest) to 9
	// (fastest), or AVIFSpeedBySize.
	AVIFSpeed int
	// WebPEffort is libwebp's method, 0 (fastest) to 6, or WebPEffortBySize.
	WebPEffort int
	// WebPSharpYUV gives still WebPs of PNG and GIF sources libwebp's sharp
	// YUV conversion (webpSharpYUV).
	WebPSharpYUV bool
	// KeepMetadata keeps EXIF/XMP/IPTC in outputs. By default it is
	// removed (after converting to sRGB, so colours stay right).
	KeepMetadata bool
	// JPEG tunes mozjpeg; the zero value is libjpeg's plain encoder.
	JPEG JPEGTuning
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

// GLibComplaints is how many critical warnings and warnings GLib has
// printed (to stderr, as it does) in this process since New: checks inside
// GLib that failed and that libvips went on past. The tests fail on any.
func GLibComplaints() int { return int(C.imgedge_glib_complaints()) }

// Version is the version of the libvips the process runs, for example
// "8.18.7" (asked at run time: a header's constant says what was compiled
// against, which a cached build may not match).
func Version() string { return C.GoString(C.vips_version_string()) }

// supported are the input formats this service decodes, as bimg tells them
// by their first bytes, but for AVIF and HEIF, which heifFormat tells by
// every brand their ftyp box lists.
var supported = map[bimg.ImageType]string{
	bimg.JPEG: "jpeg",
	bimg.PNG:  "png",
	bimg.WEBP: "webp",
	bimg.GIF:  "gif",
}

// maxSide is the largest side each output format can store.
var maxSide = map[variant.Format]int{
	variant.FormatJPEG: 65_500,
	variant.FormatWebP: 16_383,
	variant.FormatAVIF: 16_384, // libheif's default security limit
	variant.FormatPNG:  1 << 30,
}

// vipsError returns libvips' error buffer as errorMessage words it, and
// clears it.
func vipsError() string {
	msg := C.GoString(C.vips_error_buffer())
	C.vips_error_clear()
	return errorMessage(msg)
}

// errorMessage words libvips' error buffer for a caller: one line per
// distinct message, joined by "; ", without the lines that only echo what
// went before them:
//   - a saver's "unable to write to target": writing to memory fails only
//     when what feeds it failed;
//   - a source's "bad seek": the HEIF loader asks whether the data reaches
//     an offset by seeking there, and libheif's own message, which follows,
//     says what was wrong.
//
// When a loader gives up on a warning (the failure policy, see
// pipeline.c), that can leave nothing, as the warning itself goes to the
// log handler, which drops it. That case says so.
func errorMessage(buffer string) string {
	var lines []string
	for l := range strings.Lines(buffer) {
		l = strings.TrimSpace(l)
		if l != "" && !echoes(l) && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "the decoder stopped on damaged or truncated data"
	}
	return strings.Join(lines, "; ")
}

// echoes says whether a line of libvips' error buffer only echoes another.
func echoes(line string) bool {
	return strings.Contains(line, "unable to write to target") || strings.HasPrefix(line, "source: bad seek to ")
}

// Probe reads an image's header: format, stored dimensions, bands, sample
// size, EXIF orientation and alpha. Before libvips reads it, the
// container, for what the decoder would walk or keep from it
// (readContainer); after, the structure of its embedded ICC profile, which
// says what building its colour transform costs (checkProfile). It does
// not decode pixels.
func (p *Processor) Probe(data []byte) (transform.ImageInfo, error) {
	if len(data) > 2 && data[0] == 0xFF && data[1] == 0xD8 && data[2] != 0xFF {
		// Stray bytes right after a JPEG's start-of-image marker hide it
		// from format sniffing; elsewhere, what repairedJPEG sets right
		// leaves its header readable as it is, without a copy.
		data = repairedJPEG(data)
	}
	name, ok := heifFormat(data)
	if !ok {
		name, ok = supported[bimg.DetermineImageType(data)]
	}
	if !ok {
		return transform.ImageInfo{}, fmt.Errorf("%w: not a JPEG, PNG, WebP, AVIF, HEIF or GIF image", transform.ErrUnsupportedImage)
	}
	held, err := readContainer(name, data)
	if err != nil {
		return transform.ImageInfo{}, err
	}
	var h C.imgedge_header
	if C.imgedge_probe(unsafe.Pointer(&data[0]), C.size_t(len(data)), &h) != 0 {
		return transform.ImageInfo{}, fmt.Errorf("%w: reading the %s header: %s", transform.ErrUnsupportedImage, name, vipsError())
	}
	profile := int64(h.icc_len)
	err = checkProfile(unsafe.Slice((*byte)(h.icc), h.icc_len))
	C.imgedge_probe_release(&h)
	if err != nil {
		return transform.ImageInfo{}, err
	}
	if h.width <= 0 || h.height <= 0 {
		return transform.ImageInfo{}, fmt.Errorf("%w: the %s header has no dimensions", transform.ErrUnsupportedImage, name)
	}
	// libvips names the coding by the first brand alone, "hevc" for
	// anything but AVIF: an AVIF whose first brand is mif1 is "hevc" to it
	// (heifFormat has read them all), and so is a HEIF coded with AVC,
	// VVC or JPEG 2000, which sharp's libheif does not decode either.
	if name == "heif" && C.GoString(&h.compression[0]) == "hevc" && !decodesHEVC() {
		return transform.ImageInfo{}, fmt.Errorf("%w: a HEIF image not coded with AV1 (a HEIC, as phones take them, is coded with HEVC), which this service's libvips cannot decode (it has no HEVC decoder): store it as JPEG, PNG, WebP or AVIF", transform.ErrUnsupportedImage)
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
		Frames:      int(h.pages),
		// The profile is held throughout, and read again to build the
		// colour transform.
		DecodeBuffer: profileHeld*profile + held,
	}
	if name == "png" {
		// libpng reads an APNG's default image and nothing of its frames.
		info.Frames = max(info.Frames, apngFrames(data))
	}
	if name == "avif" || name == "heif" {
		// libvips counts an AVIF's or HEIF's top-level images as its
		// pages: a collection of stills (a burst, renditions, a grid whose
		// tiles are not hidden) is no animation, and what a viewer sees
		// is the primary image, which libvips loads. An animation is an
		// image sequence, whose still image (its first frame) libheif
		// reads.
		info.Frames = max(1, sequenceFrames(data))
	}
	if name == "gif" {
		// The decoder keeps the whole frame, RGBA, while libvips reads it.
		info.DecodeBuffer += info.Pixels() * 4
	}
	return info, nil
}

// readContainer reads what an image's container lists before libvips
// reads its header, for what its decoder would walk or keep from it before
// any limit could be judged, and refuses what is past any image's need:
// an AVIF's or HEIF's sizes (heifSizesHold) and sequence tables
// (checkSequence), a PNG's profile and text, a WebP's chunks and lossless
// prefix codes (readWebP), a GIF's frames, a JPEG's scans and kept
// segments (readJPEG). held is the memory the decoder keeps of what the
// container carries, beyond the pixels.
func readContainer(name string, data []byte) (held int64, err error) {
	switch name {
	case "avif", "heif":
		if err := heifSizesHold(name, data, int64(C.vips_max_coord_get())); err != nil {
			return 0, err
		}
		return 0, checkSequence(name, data)
	case "png":
		if size := pngProfileSize(data, maxProfileBytes); size > maxProfileBytes {
			return 0, fmt.Errorf("%w: the PNG's embedded ICC profile inflates past %d bytes, and this service takes profiles of up to %d", transform.ErrTooLarge, maxProfileBytes, maxProfileBytes)
		}
		text := pngTextSize(data, maxTextBytes)
		if text > maxTextBytes {
			return 0, fmt.Errorf("%w: the PNG's text chunks (comments, XMP) inflate past %d bytes in all, and this service takes up to %d", transform.ErrTooLarge, maxTextBytes, maxTextBytes)
		}
		return textHeld * text, nil
	case "webp":
		return readWebP(data)
	case "gif":
		frames, complete := gifFrames(data)
		if !complete {
			return 0, fmt.Errorf("%w: the GIF is cut short inside a block, after %d whole frames", transform.ErrUnsupportedImage, frames)
		}
		if frames > maxGIFFrames {
			return 0, fmt.Errorf("%w: the GIF lists %d frames, and the decoder keeps an entry for each: this service reads up to %d", transform.ErrUnsupportedImage, frames, maxGIFFrames)
		}
	case "jpeg":
		return readJPEG(data)
	}
	return 0, nil
}

// readJPEG reads a JPEG's structure, and refuses what libvips would not
// decode or what would cost more than any encoder's output: samples other
// than 8-bit, more than maxJPEGScans scans, more than maxJPEGSegments
// segments libjpeg keeps. held is what the decoder keeps for the whole
// image: a multi-scan JPEG's coefficients, and the kept segments' copies.
func readJPEG(data []byte) (held int64, err error) {
	st, err := jpegscan.Read(data)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", transform.ErrUnsupportedImage, err)
	}
	if st.Precision != 8 {
		return 0, fmt.Errorf("%w: the JPEG's samples have %d bits (precision %d), and this service decodes 8-bit JPEGs", transform.ErrUnsupportedImage, st.Precision, st.Precision)
	}
	if st.Scans > maxJPEGScans {
		return 0, fmt.Errorf("%w: the JPEG's data comes in %d scans, and each is a pass over the whole image: this service decodes up to %d (encoders write at most a few dozen)",
			transform.ErrUnsupportedImage, st.Scans, maxJPEGScans)
	}
	kept, keptBytes := 0, int64(0)
	for _, n := range savedSegments {
		kept, keptBytes = kept+st.AppSegments[n], keptBytes+st.AppBytes[n]
	}
	if kept > maxJPEGSegments {
		return 0, fmt.Errorf("%w: the JPEG carries %d metadata segments (APP1, APP2, APP13), and the decoder keeps each: this service reads up to %d (cameras write a few, a large colour profile a few hundred)",
			transform.ErrUnsupportedImage, kept, maxJPEGSegments)
	}
	return st.CoefficientBytes() + segmentsHeld*keptBytes, nil
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

// savedSegments are the application segments libvips has libjpeg keep
// while it reads a JPEG: APP1 (EXIF, XMP), APP2 (ICC profile, MPF) and
// APP13 (IPTC). libjpeg keeps each in an allocation of its own, with its
// header, in the header read and again in the decode: a 50 MB JPEG of ten
// million empty APP13 segments (under the default source limit) took a
// server's peak RSS up by 2.5 GB and 3.7 s of CPU, and answered OK.
var savedSegments = [...]int{1, 2, 13}

// maxJPEGSegments is the most kept segments a JPEG may carry. A colour
// profile as large as a JPEG carries takes 255 APP2 segments, extended XMP
// one APP1 segment per 64 KB; cameras write a few in all.
const maxJPEGSegments = 1000

// segmentsHeld is the memory a JPEG's kept segments cost while it is
// processed, as a multiple of their size: libjpeg's copies in the header
// read and in the decode (a server's peak grew 1.9 times 700 APP1
// segments of 64 KB, against the same file's segments as APP5, which
// libjpeg skips).
const segmentsHeld = 2

// plan is one run of the pipeline: the C options and what they imply.
type plan struct {
	opts   C.imgedge_opts
	shrink int // JPEG shrink-on-load factor
}

// plan sizes the output and the shrink-on-load, and checks that the output
// format can hold the result.
func (p *Processor) plan(spec variant.Spec, src transform.ImageInfo, format C.int) (plan, error) {
	upW, upH := upright(src)
	outW, outH := targetSize(spec, upW, upH)
	if format != C.IMGEDGE_RAW {
		if err := sideFits(spec.Format, outW, outH); err != nil {
			return plan{}, err
		}
	}
	pl := plan{shrink: shrinkOnLoad(src, upW, upH, outW, outH)}
	avif := p.avifEncoding(outW * outH)
	pl.opts = C.imgedge_opts{
		width:         C.int(outW),
		height:        C.int(outH),
		shrink:        C.int(pl.shrink),
		format:        format,
		quality:       C.int(spec.Quality),
		interlace:     cbool(spec.Progressive || p.cfg.JPEG.Progressive),
		effort:        C.int(9 - avif.speed),
		avif_bitdepth: C.int(avif.bitDepth),
		webp_effort:   C.int(p.webpEffort(outW * outH)),
		keep_metadata: cbool(p.cfg.KeepMetadata),
		trellis:       cbool(p.cfg.JPEG.Trellis),
		deringing:     cbool(p.cfg.JPEG.Deringing),
		quant_table:   C.int(p.cfg.JPEG.quantTable(spec.Quality)),
		subsample:     p.chroma(spec),
		flatten:       cbool(format == C.IMGEDGE_JPEG),
		palette:       cbool(format == C.IMGEDGE_PNG && spec.Quality > 0),
		animate:       cbool(format == C.IMGEDGE_WEBP && src.AnimatesAs(spec.Format)),
		frames:        C.int(src.Frames),
	}
	pl.opts.fit_luma = cbool(format == C.IMGEDGE_JPEG && p.fitLuma(spec, src.Format))
	pl.opts.webp_sharp_yuv = cbool(format == C.IMGEDGE_WEBP && p.webpSharpYUV(src.Format, outW*outH, pl.opts.animate != 0))
	if spec.Fit == variant.FitCover {
		pl.opts.cover = 1
	}
	return pl, nil
}

// Fits refuses, from the header alone, a variant its format cannot store
// (WebP and AVIF stop at 16,383 and 16,384 pixels a side), with an error
// wrapping transform.ErrTooLargeForFormat.
func (p *Processor) Fits(op transform.Operation) error {
	upW, upH := upright(op.Source)
	outW, outH := targetSize(op.Spec, upW, upH)
	return sideFits(op.Spec.Format, outW, outH)
}

// upright is the size of src once its EXIF orientation is applied.
func upright(src transform.ImageInfo) (w, h int) {
	if src.Orientation >= 5 { // 90° turns swap the sides
		return src.Height, src.Width
	}
	return src.Width, src.Height
}

// sideFits refuses a w×h output past what format f stores on a side.
func sideFits(f variant.Format, w, h int) error {
	if limit, ok := maxSide[f]; ok && (w > limit || h > limit) {
		return fmt.Errorf("%w: the variant would be %d×%d pixels, and %s stores at most %d on a side: ask for a smaller size or another format",
			transform.ErrTooLargeForFormat, w, h, f, limit)
	}
	return nil
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
	data = repairedJPEG(data)
	if c, ok := coding(data); ok && c.converted() {
		opts.cicp_primaries, opts.cicp_transfer = C.int(c.primaries), C.int(c.transfer)
		if bytes.HasPrefix(data, pngSignature) {
			opts.cicp_over_icc = 1
		}
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

// repairedJPEG is data, where it is a JPEG, with the slips set right that
// libjpeg warns of and then decodes past as if they were not there, so
// that fail-on-warning refuses damage alone:
//   - bytes between the header's marker segments ("extraneous bytes
//     before marker"), which the decoder skips, are left out;
//   - header fields that say nothing about the pixels (a JFIF version
//     other than 1.x, a sequential scan's spectral selection and
//     approximation other than 0–63 and 0: jpegscan's HeaderSlips) are set
//     to what the decoder takes them for;
//   - a single-scan JPEG that lacks its end-of-image marker (its encoder
//     left it out, or a cut came exactly at the end) gets it ("premature
//     end" otherwise). Data cut short still fails: the decoder then meets
//     the marker before the image's last block, and warns of that. A
//     progressive JPEG is left without it, so that one cut between two of
//     its scans is refused rather than decoded blurred by the scans it
//     lost.
//
// A repaired JPEG is a copy; anything else is data itself.
func repairedJPEG(data []byte) []byte {
	if len(data) < 2 || data[0] != 0xFF || data[1] != 0xD8 {
		return data
	}
	st, err := jpegscan.Read(data)
	if err != nil || st.StrayHeaderOverflow {
		return data
	}
	out := st.WithoutStrayHeaderBytes(st.WithHeaderSlipsSet(data))
	if !st.Ended && !st.MultiScan() {
		out = append(out[:len(out):len(out)], 0xFF, 0xD9)
	}
	return out
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
