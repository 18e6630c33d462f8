package imaging

/*
#cgo pkg-config: vips
#cgo LDFLAGS: -lm
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <vips/vips.h>

// imgedge_profile_is_srgb reports whether an image's embedded ICC profile
// is an sRGB one (its description tag names sRGB): converting sRGB to sRGB
// costs a third of a 720 px resize and changes nothing.
static int imgedge_profile_is_srgb(VipsImage *img) {
	const void *data;
	size_t len, i, j;
	const unsigned char *p;
	if (vips_image_get_blob(img, VIPS_META_ICC_NAME, &data, &len) || len < 132)
		return 0;
	p = data;
	size_t count = ((size_t) p[128] << 24) | (p[129] << 16) | (p[130] << 8) | p[131];
	for (i = 0; i < count && 132 + 12 * (i + 1) <= len; i++) {
		const unsigned char *e = p + 132 + 12 * i;
		if (memcmp(e, "desc", 4) != 0)
			continue;
		size_t off = ((size_t) e[4] << 24) | (e[5] << 16) | (e[6] << 8) | e[7];
		size_t size = ((size_t) e[8] << 24) | (e[9] << 16) | (e[10] << 8) | e[11];
		if (off >= len || size > len - off)
			return 0;
		for (j = 0; j + 4 <= size; j++) {
			if (memcmp(p + off + j, "sRGB", 4) == 0)
				return 1;
			if (j + 8 <= size && memcmp(p + off + j, "\0s\0R\0G\0B", 8) == 0)
				return 1;
		}
		return 0;
	}
	return 0;
}

// imgedge_needs_icc reports whether an encoded image carries a profile
// that must be converted to sRGB. It reads the header only.
static int imgedge_needs_icc(void *buf, size_t len) {
	VipsImage *img = vips_image_new_from_buffer(buf, len, "", NULL);
	int needs;
	if (!img) {
		vips_error_clear();
		return 1;
	}
	needs = vips_image_get_typeof(img, VIPS_META_ICC_NAME) && !imgedge_profile_is_srgb(img);
	g_object_unref(img);
	return needs;
}

// imgedge_luma decodes to 8-bit luma. Images over max_pixels are scored on
// their central max_pixels at full resolution: shrinking them would hide the
// very artifacts the score must see.
static int imgedge_luma(void *buf, size_t len, int max_pixels, void **out, size_t *outlen, int *ow, int *oh) {
	VipsImage *base = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 5);
	VipsImage *img;
	int rc = -1;
	double pixels;

	t[0] = vips_image_new_from_buffer(buf, len, "", NULL);
	if (!t[0])
		goto done;
	img = t[0];
	pixels = (double) vips_image_get_width(img) * vips_image_get_height(img);
	if (pixels > max_pixels) {
		int w = vips_image_get_width(img), h = vips_image_get_height(img);
		double f = sqrt(max_pixels / pixels);
		int cw = VIPS_MAX(11, (int) (w * f)), ch = VIPS_MAX(11, (int) (h * f));
		if (vips_extract_area(img, &t[1], (w - cw) / 2, (h - ch) / 2, cw, ch, NULL))
			goto done;
		img = t[1];
	}
	if (vips_colourspace(img, &t[2], VIPS_INTERPRETATION_B_W, NULL) ||
		vips_extract_band(t[2], &t[3], 0, NULL) ||
		vips_cast(t[3], &t[4], VIPS_FORMAT_UCHAR, NULL))
		goto done;
	*ow = vips_image_get_width(t[4]);
	*oh = vips_image_get_height(t[4]);
	*out = vips_image_write_to_memory(t[4], outlen);
	rc = *out ? 0 : -1;
done:
	g_object_unref(base);
	return rc;
}

typedef struct {
	int width, height;  // output size, upright
	int cover;          // scale to cover, then crop the centre
	int shrink;         // JPEG shrink-on-load factor: 1, 2, 4 or 8
	int format;         // 0 jpeg, 1 webp, 2 avif, 3 png, 4 uncompressed tiff (intermediate)
	int quality, interlace, strip, effort, flatten;
} imgedge_opts;

// imgedge_oriented decodes with JPEG shrink-on-load, applies the EXIF
// orientation to the already small image, resizes (Lanczos 3), converts to
// sRGB through the embedded profile if any, and encodes. It returns 0 on
// success and fills out, outlen, ow, oh.
static int imgedge_oriented(void *buf, size_t len, imgedge_opts *o, void **out, size_t *outlen, int *ow, int *oh) {
	VipsImage *base = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 8);
	VipsImage *img;
	double hscale, vscale;
	int rc = -1;

	if (o->shrink > 1)
		t[0] = NULL, rc = vips_jpegload_buffer(buf, len, &t[0], "shrink", o->shrink, NULL);
	else
		t[0] = vips_image_new_from_buffer(buf, len, "", NULL), rc = t[0] ? 0 : -1;
	if (rc || vips_autorot(t[0], &t[1], NULL))
		goto done;
	img = t[1];
	hscale = (double) o->width / vips_image_get_width(img);
	vscale = (double) o->height / vips_image_get_height(img);
	if (o->cover)
		hscale = vscale = VIPS_MAX(hscale, vscale);
	if (vips_resize(img, &t[2], hscale, "vscale", vscale, NULL))
		goto done;
	img = t[2];
	if (o->cover) {
		int w = VIPS_MIN(o->width, vips_image_get_width(img)), h = VIPS_MIN(o->height, vips_image_get_height(img));
		if (vips_extract_area(img, &t[3], (vips_image_get_width(img) - w) / 2, (vips_image_get_height(img) - h) / 2, w, h, NULL))
			goto done;
		img = t[3];
	}
	if (vips_image_get_typeof(img, VIPS_META_ICC_NAME) && !imgedge_profile_is_srgb(img))
		rc = vips_icc_transform(img, &t[4], "srgb", "embedded", TRUE, NULL);
	else
		rc = vips_colourspace(img, &t[4], VIPS_INTERPRETATION_sRGB, NULL);
	if (rc)
		goto done;
	img = t[4];
	if (o->flatten && vips_image_hasalpha(img)) {
		VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
		rc = vips_flatten(img, &t[5], "background", white, NULL);
		vips_area_unref(VIPS_AREA(white));
		if (rc)
			goto done;
		img = t[5];
	}
	*ow = vips_image_get_width(img);
	*oh = vips_image_get_height(img);
	switch (o->format) {
	case 1:
		rc = vips_webpsave_buffer(img, out, outlen, "Q", o->quality, "strip", o->strip, NULL);
		break;
	case 2:
		rc = vips_heifsave_buffer(img, out, outlen, "Q", o->quality, "strip", o->strip,
			"compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "effort", o->effort, NULL);
		break;
	case 3:
		rc = vips_pngsave_buffer(img, out, outlen, "compression", 6, "strip", o->strip, NULL);
		break;
	case 4:
		rc = vips_tiffsave_buffer(img, out, outlen, NULL);
		break;
	default:
		rc = vips_jpegsave_buffer(img, out, outlen, "Q", o->quality, "strip", o->strip,
			"interlace", o->interlace, NULL);
	}
done:
	g_object_unref(base);
	return rc ? -1 : 0;
}
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/quality"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// processOriented handles images with an EXIF orientation other than 1.
// bimg rotates before it shrinks: on a 12 MP phone photo that rotates the
// full image and re-encodes it before shrink-on-load can help (7× the CPU).
// Here the JPEG decoder shrinks first (by the largest power of two that keeps
// the image at least as large as the output), and the small result is
// oriented. libvips' own thumbnail operator would also orient late, but it
// deliberately shrinks on load by half as much, which costs 50 % more CPU.
func (p *Processor) processOriented(data []byte, spec variant.Spec, src transform.ImageInfo, intermediate bool) (transform.Output, error) {
	defer C.vips_thread_shutdown()
	dispW, dispH := src.Width, src.Height
	if src.Orientation >= 5 { // 90° turns swap the sides
		dispW, dispH = dispH, dispW
	}
	outW, outH := targetSize(spec, dispW, dispH)
	opts := C.imgedge_opts{
		width:     C.int(outW),
		height:    C.int(outH),
		shrink:    1,
		quality:   C.int(spec.Quality),
		interlace: cbool(spec.Progressive),
		strip:     cbool(!p.cfg.KeepMetadata),
		effort:    C.int(9 - p.cfg.AVIFSpeed),
	}
	if spec.Fit == variant.FitCover {
		opts.cover = 1
	}
	if src.Format == "jpeg" {
		factor := math.Min(float64(dispW)/float64(outW), float64(dispH)/float64(outH))
		for _, s := range []int{8, 4, 2} {
			if factor >= float64(s) {
				opts.shrink = C.int(s)
				break
			}
		}
	}
	switch spec.Format {
	case variant.FormatWebP:
		opts.format = 1
	case variant.FormatAVIF:
		opts.format = 2
	case variant.FormatPNG:
		opts.format = 3
	default:
		opts.flatten = 1
	}
	if intermediate {
		opts.format, opts.flatten = 4, 0
	}
	var out unsafe.Pointer
	var outLen C.size_t
	var w, h C.int
	if C.imgedge_oriented(unsafe.Pointer(&data[0]), C.size_t(len(data)), &opts, &out, &outLen, &w, &h) != 0 {
		msg := C.GoString(C.vips_error_buffer())
		C.vips_error_clear()
		return transform.Output{}, fmt.Errorf("%w: %s", transform.ErrUnsupportedImage, msg)
	}
	defer C.g_free(C.gpointer(out))
	return transform.Output{Data: C.GoBytes(out, C.int(outLen)), Width: int(w), Height: int(h)}, nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// lumaPlane decodes an image to 8-bit luma; past maxPixels, only the central
// region of that many pixels (both sides of a comparison crop alike, being
// the same size).
func lumaPlane(data []byte, maxPixels int) (quality.Plane, error) {
	defer C.vips_thread_shutdown()
	var out unsafe.Pointer
	var outLen C.size_t
	var w, h C.int
	if C.imgedge_luma(unsafe.Pointer(&data[0]), C.size_t(len(data)), C.int(maxPixels), &out, &outLen, &w, &h) != 0 {
		msg := C.GoString(C.vips_error_buffer())
		C.vips_error_clear()
		return quality.Plane{}, fmt.Errorf("%w: decoding for scoring: %s", transform.ErrUnsupportedImage, msg)
	}
	defer C.g_free(C.gpointer(out))
	return quality.Plane{Width: int(w), Height: int(h), Pix: C.GoBytes(out, C.int(outLen))}, nil
}

// needsICC reports whether data embeds a non-sRGB profile, which must be
// converted before metadata is stripped.
func needsICC(data []byte) bool {
	return C.imgedge_needs_icc(unsafe.Pointer(&data[0]), C.size_t(len(data))) != 0
}
