// The libvips pipeline behind Processor: header probing, decoding with a
// strict failure policy, resizing and encoding. Every function reports
// failure by returning non-zero with libvips' error buffer set.
#ifndef IMGEDGE_PIPELINE_H
#define IMGEDGE_PIPELINE_H

#include <stddef.h>

// Output formats.
enum {
	IMGEDGE_JPEG = 0,
	IMGEDGE_WEBP = 1,
	IMGEDGE_AVIF = 2,
	IMGEDGE_PNG = 3,
	IMGEDGE_RAW = 4, // uncompressed 8-bit sRGB pixels, for further encodes
};

typedef struct {
	int width, height;  // stored (not oriented) size
	int bands;          // including alpha
	int sample_bytes;   // bytes per band per pixel
	int orientation;    // EXIF orientation, 1 when absent
	int alpha;          // the last band is alpha
	char loader[32];    // libvips loader, e.g. "jpegload_buffer"
	char compression[8]; // a HEIF's codec: "hevc" or "av1"; empty for other formats
	int pages;          // frames of an animation (GIF, WebP), else 1
	const void *icc;    // the embedded ICC profile, or NULL; held by image
	size_t icc_len;
	void *image;        // the header's image, until imgedge_probe_release
} imgedge_header;

typedef struct {
	int width, height;  // output size, upright
	int cover;          // scale to cover the box, then crop its centre
	int shrink;         // JPEG shrink-on-load factor: 1, 2, 4 or 8
	int format;         // IMGEDGE_*
	int quality, interlace, effort; // effort: AVIF's (9 - speed)
	int avif_bitdepth;  // the bit depth AV1 codes at: 8 or 10
	int webp_effort;    // libwebp's method, 0 (fastest) to 6
	int webp_sharp_yuv; // libwebp's iterative ("sharp") RGB to YUV 4:2:0 conversion
	int trellis, deringing, quant_table; // mozjpeg's encoder settings
	int subsample;      // JPEG and AVIF chroma: VipsForeignSubsample
	int flatten;        // composite alpha onto white (formats without alpha)
	int palette;        // PNG: quantise to a palette of at most 256 colours at quality
	int animate;        // every frame of an animation (GIF, WebP), each fitted to the box
	int frames;         // with animate: how many frames the header counts
	int keep_metadata;  // keep EXIF/XMP/IPTC (never on by default)
	int fit_luma;       // JPEG 4:2:0: fit each pixel's luma to its decoded chroma (imgedge_fit_luma)
	int cicp_primaries, cicp_transfer; // the coding a file states (H.273: nclx, cICP) when not sRGB; 0: sRGB
	int cicp_over_icc;                 // the stated coding wins over an ICC profile (a PNG's cICP over its iCCP)
} imgedge_opts;

// imgedge_init applies process-wide settings: no operation cache, no
// untrusted loaders, warnings dropped (failures still surface as errors).
void imgedge_init(void);

// imgedge_glib_complaints is how many critical warnings and warnings GLib
// has printed since imgedge_init.
int imgedge_glib_complaints(void);

// imgedge_probe reads an image's header without decoding its pixels. After
// a success, h holds the header's image (and its profile) until
// imgedge_probe_release.
int imgedge_probe(const void *buf, size_t len, imgedge_header *h);
void imgedge_probe_release(imgedge_header *h);

// imgedge_process decodes buf (failing on truncated or damaged data),
// shrinks on load, resizes with premultiplied alpha, orients, converts to
// sRGB, drops metadata and encodes as o says. On success *out is a g_malloc'd
// buffer of *outlen bytes, and *ow, *oh, *obands describe the result (with
// animate, each of its frames).
int imgedge_process(const void *buf, size_t len, const imgedge_opts *o,
	void **out, size_t *outlen, int *ow, int *oh, int *obands);

// imgedge_encode_raw encodes 8-bit sRGB pixels (as IMGEDGE_RAW produced them).
int imgedge_encode_raw(const void *pix, size_t len, int width, int height, int bands,
	const imgedge_opts *o, void **out, size_t *outlen);

// imgedge_fit_luma moves each of w×h interleaved 8-bit sRGB pixels by a
// grey offset so that their 4:2:0 JPEG decodes with each pixel's own
// luminance (fit_luma.c). It fails only when memory runs out.
int imgedge_fit_luma(unsigned char *rgb, int w, int h);

// imgedge_viewed decodes an encoded image, or raw pixels when width > 0,
// to what a viewer sees: 8-bit sRGB, 3 bands, alpha flattened onto white.
int imgedge_viewed(const void *buf, size_t len, int width, int height, int bands,
	void **out, size_t *outlen, int *ow, int *oh);

#endif
