#include <string.h>
#include <vips/vips.h>

#include "pipeline.h"

static void drop_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {}

// complaints counts GLib's own critical warnings and warnings: each is a
// check inside GLib that failed (a property set out of its range, an
// object used after its last reference) and that libvips went on past.
static gint complaints;

static void count_complaint(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {
	g_atomic_int_inc(&complaints);
	g_log_default_handler(domain, level, msg, data);
}

int imgedge_glib_complaints(void) {
	return g_atomic_int_get(&complaints);
}

void imgedge_init(void) {
	static const char *glib_domains[] = {"GLib", "GLib-GObject", "GLib-GIO"};

	// Warnings (such as "ignoring nclx profile") go straight to stderr and
	// would break the JSON log stream; the failure policy below turns the
	// ones that matter into errors.
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO, drop_log, NULL);
	for (size_t i = 0; i < G_N_ELEMENTS(glib_domains); i++)
		g_log_set_handler(glib_domains[i], G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING, count_complaint, NULL);
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_block_untrusted_set(TRUE);
}

// settled ends an entry point: after a success it empties libvips' error
// buffer, which is one for the whole process. A step that recovered (an
// ICC import falls back to sRGB from a corrupt profile) leaves its message
// there, and the next call to fail, another caller's maybe, would report
// it as its own. A failure's message stays for the caller to read; one
// that fails while another call succeeds may lose it to this clear, and
// then reads as a generic failure rather than as someone else's.
static int settled(int rc) {
	if (rc == 0 && *vips_error_buffer())
		vips_error_clear();
	return rc;
}

// is_jpeg says whether buf starts like a JPEG. Every JPEG is read with
// jpegload: libvips would hand an UltraHDR one (a gain map after the image)
// to libultrahdr's loader, which parses the map too, and a variant is the
// SDR image alone.
static int is_jpeg(const void *buf, size_t len) {
	const unsigned char *p = buf;
	return len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

// is_heif says whether buf is an ISOBMFF file, which the service takes
// only as AVIF or HEIF (heifFormat, by every brand its ftyp box lists).
// Each is read with heifload: libvips tells them by the first brand alone
// and passes by an animated AVIF (avis), whose still image, the first
// frame, libheif reads, or an AVIF whose first brand is miaf or MA1B.
static int is_heif(const void *buf, size_t len) {
	return len >= 8 && !memcmp((const char *) buf + 4, "ftyp", 4);
}

// open_buffer opens buf for sequential access with the loader for it
// (is_heif, or the one libvips finds): every page (frame) one under the
// other when all_pages is set, else the first.
static VipsImage *open_buffer(const void *buf, size_t len, int all_pages, VipsFailOn fail_on) {
	VipsImage *img = NULL;

	if (is_heif(buf, len))
		return vips_heifload_buffer((void *) buf, len, &img, "n", all_pages ? -1 : 1,
			"access", VIPS_ACCESS_SEQUENTIAL, "fail_on", fail_on, NULL) ? NULL : img;
	if (all_pages)
		return vips_image_new_from_buffer(buf, len, "", "n", -1,
			"access", VIPS_ACCESS_SEQUENTIAL, "fail_on", fail_on, NULL);
	return vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", fail_on, NULL);
}

static int probe(const void *buf, size_t len, imgedge_header *h) {
	int jpeg = is_jpeg(buf, len);
	const char *loader = jpeg ? "VipsForeignLoadJpegBuffer"
		: is_heif(buf, len) ? "VipsForeignLoadHeifBuffer"
		: vips_foreign_find_load_buffer(buf, len);
	VipsImage *img = NULL;
	const char *compression;
	int orientation = 1;

	if (!loader)
		return -1;
	if (jpeg && vips_jpegload_buffer((void *) buf, len, &img, "access", VIPS_ACCESS_SEQUENTIAL, NULL))
		return -1;
	if (!jpeg)
		img = open_buffer(buf, len, 0, VIPS_FAIL_ON_NONE);
	if (!img)
		return -1;
	h->width = vips_image_get_width(img);
	h->height = vips_image_get_height(img);
	h->bands = vips_image_get_bands(img);
	h->sample_bytes = (int) vips_format_sizeof(vips_image_get_format(img));
	if (vips_image_get_typeof(img, VIPS_META_ORIENTATION) &&
		vips_image_get_int(img, VIPS_META_ORIENTATION, &orientation))
		orientation = 1;
	h->orientation = orientation;
	h->alpha = vips_image_hasalpha(img);
	// The loader's own count: vips_image_get_n_pages calls an animation of
	// 10,000 frames or more a single page, which would pass it for a still.
	if (!vips_image_get_typeof(img, VIPS_META_N_PAGES) ||
		vips_image_get_int(img, VIPS_META_N_PAGES, &h->pages) || h->pages < 1)
		h->pages = 1;
	g_strlcpy(h->loader, loader, sizeof(h->loader));
	h->compression[0] = 0;
	if (vips_image_get_typeof(img, "heif-compression") &&
		!vips_image_get_string(img, "heif-compression", &compression))
		g_strlcpy(h->compression, compression, sizeof(h->compression));
	h->icc = NULL;
	h->icc_len = 0;
	if (vips_image_get_typeof(img, VIPS_META_ICC_NAME) &&
		vips_image_get_blob(img, VIPS_META_ICC_NAME, &h->icc, &h->icc_len)) {
		g_object_unref(img);
		return -1;
	}
	h->image = img;
	return 0;
}

// profile_is_srgb reports whether an image's embedded ICC profile is an
// sRGB one (its description tag names sRGB): converting sRGB to sRGB costs
// a third of a 720 px resize and changes nothing.
static int profile_is_srgb(VipsImage *img) {
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

// to_srgb converts to 8-bit sRGB, through the embedded profile if it is not
// sRGB already. Alpha passes through.
static int to_srgb(VipsImage *in, VipsImage **out) {
	VipsImage *t = NULL;
	int rc;
	if (vips_image_get_typeof(in, VIPS_META_ICC_NAME) && !profile_is_srgb(in))
		rc = vips_icc_transform(in, &t, "srgb", "embedded", TRUE, NULL);
	else
		rc = vips_colourspace(in, &t, VIPS_INTERPRETATION_sRGB, NULL);
	if (rc)
		return -1;
	if (vips_image_get_format(t) == VIPS_FORMAT_UCHAR) {
		*out = t;
		return 0;
	}
	rc = vips_cast(t, out, VIPS_FORMAT_UCHAR, NULL);
	g_object_unref(t);
	return rc;
}

static int flatten_white(VipsImage *in, VipsImage **out) {
	VipsArrayDouble *white = vips_image_get_bands(in) > 2
		? vips_array_double_newv(3, 255.0, 255.0, 255.0)
		: vips_array_double_newv(1, 255.0);
	int rc = vips_flatten(in, out, "background", white, NULL);
	vips_area_unref(VIPS_AREA(white));
	return rc;
}

// exact_size crops (centred) or extends (by copying edge pixels) to exactly
// width×height: resizing may round a side one pixel off.
static int exact_size(VipsImage *in, VipsImage **out, int width, int height) {
	int w = vips_image_get_width(in), h = vips_image_get_height(in);
	VipsImage *t = NULL;
	if (w > width || h > height) {
		int cw = VIPS_MIN(w, width), ch = VIPS_MIN(h, height);
		if (vips_extract_area(in, &t, (w - cw) / 2, (h - ch) / 2, cw, ch, NULL))
			return -1;
		in = t;
		w = cw, h = ch;
	}
	if (w < width || h < height) {
		int rc = vips_embed(in, out, 0, 0, width, height, "extend", VIPS_EXTEND_COPY, NULL);
		if (t)
			g_object_unref(t);
		return rc;
	}
	if (t) {
		*out = t;
		return 0;
	}
	return vips_copy(in, out, NULL);
}

static int is_private(const char *name) {
	return g_str_has_prefix(name, "exif-") || g_str_has_prefix(name, "xmp-") ||
		g_str_has_prefix(name, "iptc-") || strcmp(name, VIPS_META_ICC_NAME) == 0 ||
		strcmp(name, VIPS_META_ORIENTATION) == 0 || g_str_has_prefix(name, "heif-") ||
		g_str_has_prefix(name, "png-comment-") || strcmp(name, "gif-comment") == 0;
}

static void *collect_private(VipsImage *img, const char *name, GValue *value, void *a) {
	GSList **names = a;
	if (is_private(name))
		*names = g_slist_prepend(*names, g_strdup(name));
	return NULL;
}

// strip_metadata drops EXIF (GPS included), XMP, IPTC, comments and the ICC
// profile from a copy of in: every saver then has nothing to write, whatever
// its own "strip" option does. The pixels are sRGB by now.
static int strip_metadata(VipsImage *in, VipsImage **out) {
	GSList *names = NULL, *p;
	if (vips_copy(in, out, NULL))
		return -1;
	vips_image_map(*out, collect_private, &names);
	for (p = names; p; p = p->next)
		vips_image_remove(*out, p->data);
	g_slist_free_full(names, g_free);
	return 0;
}

static int save(VipsImage *img, const imgedge_opts *o, void **out, size_t *outlen) {
	gboolean strip = !o->keep_metadata;
	switch (o->format) {
	case IMGEDGE_WEBP:
		return vips_webpsave_buffer(img, out, outlen, "Q", o->quality, "strip", strip,
			"effort", o->webp_effort, "smart_subsample", o->webp_sharp_yuv ? TRUE : FALSE, NULL);
	case IMGEDGE_AVIF:
		return vips_heifsave_buffer(img, out, outlen, "Q", o->quality, "strip", strip,
			"compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "effort", o->effort,
			"bitdepth", o->avif_bitdepth > 8 ? 10 : 8, "subsample_mode", o->subsample, NULL);
	case IMGEDGE_PNG:
		// With palette, libimagequant (dithered) aims for quality "Q".
		return vips_pngsave_buffer(img, out, outlen, "compression", 6, "strip", strip,
			"palette", o->palette ? TRUE : FALSE, "Q", VIPS_CLIP(1, o->quality, 100), NULL);
	case IMGEDGE_RAW:
		*out = vips_image_write_to_memory(img, outlen);
		return *out ? 0 : -1;
	default:
		// trellis_quant, overshoot_deringing, optimize_scans and quant_table
		// need libvips built with mozjpeg (the one the Makefile installs).
		return vips_jpegsave_buffer(img, out, outlen, "Q", o->quality, "strip", strip,
			"interlace", o->interlace, "optimize_coding", TRUE,
			"trellis_quant", o->trellis, "overshoot_deringing", o->deringing,
			"optimize_scans", o->interlace, "quant_table", o->quant_table,
			"subsample_mode", o->subsample, NULL);
	}
}

static void free_pixels(VipsImage *img, gpointer pixels) {
	g_free(pixels);
}

// fit_luma fits a 3-band 8-bit image's luma for a 4:2:0 JPEG
// (imgedge_fit_luma), which needs the whole image in memory.
static int fit_luma(VipsImage *in, VipsImage **out) {
	size_t len;
	int w = vips_image_get_width(in), h = vips_image_get_height(in);
	unsigned char *pix = vips_image_write_to_memory(in, &len);
	if (!pix)
		return -1;
	if (imgedge_fit_luma(pix, w, h)) {
		g_free(pix);
		vips_error("imgedge", "out of memory for fitting luma");
		return -1;
	}
	if (!(*out = vips_image_new_from_memory(pix, len, w, h, 3, VIPS_FORMAT_UCHAR))) {
		g_free(pix);
		return -1;
	}
	(*out)->Type = VIPS_INTERPRETATION_sRGB;
	g_signal_connect(*out, "postclose", G_CALLBACK(free_pixels), pix);
	return 0;
}

// finish converts a resized, upright image to what the output format needs
// and encodes it.
static int finish(VipsImage *base, VipsImage *img, const imgedge_opts *o, void **out, size_t *outlen, int *obands) {
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 4);
	if (to_srgb(img, &t[0]))
		return -1;
	img = t[0];
	if (o->flatten && vips_image_hasalpha(img)) {
		if (flatten_white(img, &t[1]))
			return -1;
		img = t[1];
	}
	if (!o->keep_metadata) {
		if (strip_metadata(img, &t[2]))
			return -1;
		img = t[2];
	}
	*obands = vips_image_get_bands(img);
	if (o->fit_luma && o->format == IMGEDGE_JPEG && *obands == 3 &&
		vips_image_get_format(img) == VIPS_FORMAT_UCHAR) {
		if (fit_luma(img, &t[3]))
			return -1;
		img = t[3];
	}
	return save(img, o, out, outlen);
}

static int load(const void *buf, size_t len, const imgedge_opts *o, VipsImage **out) {
	// Fail on the decoder's first warning, for every loader (sharp's default
	// too): libvips would otherwise only warn about truncated or corrupt
	// data and fill the missing rows with grey or black, and a damaged
	// original must never become a stored variant.
	if (is_jpeg(buf, len))
		return vips_jpegload_buffer((void *) buf, len, out, "shrink", VIPS_MAX(1, o->shrink),
			"access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_WARNING, NULL);
	// An animation's every frame, one under the other (a strip of pages).
	*out = open_buffer(buf, len, o->animate, VIPS_FAIL_ON_WARNING);
	return *out ? 0 : -1;
}

// Converting coded values to sRGB where a file states its coding in H.273
// code points (an AVIF's or HEIF's nclx colour box, a PNG's cICP chunk),
// which libvips' loaders ignore. The code points converted from:
enum {
	CICP_PRIMARIES_BT2020 = 9,
	CICP_PRIMARIES_P3 = 12,
	CICP_TRANSFER_PQ = 16,
	CICP_TRANSFER_HLG = 18,
};

// HDR white: BT.2408's reference white, 203 cd/m², is SDR's white.
#define HDR_WHITE_NITS 203.0
// HLG's nominal peak, at which its system gamma is 1.2 (BT.2100).
#define HLG_PEAK_NITS 1000.0
// Tone mapping leaves linear light up to this share of SDR white as it is
// and rolls what is above off towards white: diffuse white lands at 0.93
// (247 of 255 in sRGB), light a stop above it at white.
#define TONE_KNEE 0.8

// tone_mapped is HDR light, relative to SDR white, mapped into SDR.
static double tone_mapped(double light) {
	if (light <= TONE_KNEE)
		return light;
	return TONE_KNEE + (1 - TONE_KNEE) * (1 - exp(-(light - TONE_KNEE) / (1 - TONE_KNEE)));
}

// coded_light is the linear light a coded value v (0–1) stands for under
// transfer: display light relative to SDR white, tone-mapped into SDR, for
// PQ and SDR; scene light (0–1) for HLG, whose OOTF looks at a pixel's
// luminance (hlg_display).
static double coded_light(double v, int transfer) {
	switch (transfer) {
	case CICP_TRANSFER_PQ: {
		// SMPTE ST 2084's EOTF: absolute luminance, 10,000 cd/m² at 1.
		const double m1 = 2610.0 / 16384, m2 = 2523.0 / 4096 * 128;
		const double c1 = 3424.0 / 4096, c2 = 2413.0 / 4096 * 32, c3 = 2392.0 / 4096 * 32;
		double p = pow(v, 1 / m2);
		return tone_mapped(pow(VIPS_MAX(p - c1, 0) / (c2 - c3 * p), 1 / m1) * 10000 / HDR_WHITE_NITS);
	}
	case CICP_TRANSFER_HLG: {
		// ARIB STD-B67's inverse OETF.
		const double a = 0.17883277, b = 1 - 4 * a, c = 0.5 - a * log(4 * a);
		return v <= 0.5 ? v * v / 3 : (exp((v - c) / a) + b) / 12;
	}
	default: // SDR: the sRGB EOTF, nothing to map
		return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
	}
}

// float_table is a steps-entry lookup table of f over 0–top, for maplut.
static VipsImage *float_table(int steps, double top, double (*f)(double, int), int arg) {
	float *table = g_new(float, steps);
	VipsImage *t;
	for (int i = 0; i < steps; i++)
		table[i] = (float) f(top * i / (steps - 1), arg);
	t = vips_image_new_from_memory_copy(table, sizeof(float) * steps, steps, 1, 1, VIPS_FORMAT_FLOAT);
	g_free(table);
	return t;
}

static double tone_mapped_at(double light, int unused) {
	(void) unused;
	return tone_mapped(light);
}

// hlg_display turns HLG scene light (three bands, float, 0–1, on primaries
// whose luminance weights are luma) into display light relative to SDR
// white, tone-mapped into SDR: BT.2100's OOTF at the nominal peak, whose
// system gamma (1.2) goes on the pixel's luminance Ys, so that every
// channel is scaled by Ys^0.2 and a colour keeps its hue and saturation
// (a gamma per channel saturated it), then tone_mapped through a table.
static int hlg_display(VipsObject *scope, VipsImage *scene, const double luma[3], VipsImage **out) {
	VipsImage **t = (VipsImage **) vips_object_local_array(scope, 7);
	const double top = HLG_PEAK_NITS / HDR_WHITE_NITS; // display light at scene light 1
	// Display light over top, scene × Ys^0.2 (0–1), as a 16-bit index.
	if (!(t[0] = vips_image_new_matrix_from_array(3, 1, luma, 3)) ||
		vips_recomb(scene, &t[1], t[0], NULL) ||
		vips_math2_const1(t[1], &t[2], VIPS_OPERATION_MATH2_POW, 1.2 - 1, NULL) ||
		vips_multiply(scene, t[2], &t[3], NULL) ||
		vips_linear1(t[3], &t[4], 65535, 0.5, NULL) ||
		vips_cast_ushort(t[4], &t[5], NULL) ||
		!(t[6] = float_table(65536, top, tone_mapped_at, 0)))
		return -1;
	return vips_maplut(t[5], out, t[6], NULL);
}

// luma_weights are the luminance weights of a colour's channels on the
// primaries H.273 names (BT.709's where it names other ones).
static const double *luma_weights(int primaries) {
	static const double bt2020[3] = { 0.2627, 0.6780, 0.0593 };
	static const double p3[3] = { 0.2290, 0.6917, 0.0793 };
	static const double bt709[3] = { 0.2126, 0.7152, 0.0722 };
	return primaries == CICP_PRIMARIES_BT2020 ? bt2020 : primaries == CICP_PRIMARIES_P3 ? p3 : bt709;
}

// Linear-light conversions to BT.709's primaries (sRGB's), D65 white.
static const double bt2020_to_bt709[9] = {
	1.6605, -0.5876, -0.0728,
	-0.1246, 1.1329, -0.0083,
	-0.0182, -0.1006, 1.1187,
};
static const double p3_to_bt709[9] = {
	1.2249, -0.2247, 0,
	-0.0420, 1.0419, 0,
	-0.0197, -0.0786, 1.0979,
};

// to_display converts decoded values from the coding their file states
// (o->cicp_*) to 8-bit sRGB: each code value to linear
// light through a table (PQ tone-mapped; HLG's OOTF and tone mapping
// after it, hlg_display), the primaries to
// BT.709's, out-of-gamut colours clipped, alpha kept. It works a region at
// a time, as the rest of the pipeline does.
static int to_display(VipsObject *scope, VipsImage *in, const imgedge_opts *o, VipsImage **out) {
	VipsImage **t = (VipsImage **) vips_object_local_array(scope, 14);
	VipsBandFormat format = vips_image_get_format(in);
	int alpha = vips_image_hasalpha(in), colours = vips_image_get_bands(in) - alpha;
	int steps = format == VIPS_FORMAT_USHORT ? 65536 : 256;
	const double *matrix = o->cicp_primaries == CICP_PRIMARIES_BT2020 ? bt2020_to_bt709 :
		o->cicp_primaries == CICP_PRIMARIES_P3 ? p3_to_bt709 : NULL;
	VipsImage *img = in;

	if (vips_image_get_typeof(in, VIPS_META_ICC_NAME)) {
		if (!o->cicp_over_icc) {
			// An ICC profile beside an AVIF's or HEIF's nclx box: the
			// profile decides, as AVIF says and as for any other image
			// (to_srgb).
			*out = in;
			return 0;
		}
		// PNG's third edition: cICP wins over iCCP. The profile goes, so
		// that nothing after this converts through it again.
		if (vips_copy(in, &t[12], NULL))
			return -1;
		vips_image_remove(t[12], VIPS_META_ICC_NAME);
		in = t[12];
	}
	if ((format != VIPS_FORMAT_UCHAR && format != VIPS_FORMAT_USHORT) || (colours != 1 && colours != 3)) {
		vips_error("imgedge", "no conversion from this coding for %d bands of format %d", colours, format);
		return -1;
	}
	if (alpha) {
		if (vips_extract_band(in, &t[0], 0, "n", colours, NULL) || vips_extract_band(in, &t[1], colours, NULL))
			return -1;
		img = t[0];
	}
	if (colours == 1) {
		VipsImage *grey[3] = { img, img, img };
		if (vips_bandjoin(grey, &t[2], 3, NULL))
			return -1;
		img = t[2];
	}
	if (!(t[3] = float_table(steps, 1, coded_light, o->cicp_transfer)) || vips_maplut(img, &t[4], t[3], NULL))
		return -1;
	img = t[4];
	if (o->cicp_transfer == CICP_TRANSFER_HLG) {
		if (hlg_display(scope, img, luma_weights(o->cicp_primaries), &t[13]))
			return -1;
		img = t[13];
	}
	if (matrix) {
		if (!(t[5] = vips_image_new_matrix_from_array(3, 3, matrix, 9)) || vips_recomb(img, &t[6], t[5], NULL))
			return -1;
		img = t[6];
	}
	// scRGB is linear light on sRGB's primaries; to sRGB clips to its range.
	if (vips_copy(img, &t[7], "interpretation", VIPS_INTERPRETATION_scRGB, NULL) ||
		vips_colourspace(t[7], &t[8], VIPS_INTERPRETATION_sRGB, NULL))
		return -1;
	img = t[8];
	if (alpha) {
		VipsImage *a = t[1];
		if (format == VIPS_FORMAT_USHORT) {
			if (vips_rshift_const1(a, &t[9], 8, NULL) || vips_cast_uchar(t[9], &t[10], NULL))
				return -1;
			a = t[10];
		}
		VipsImage *both[2] = { img, a };
		if (vips_bandjoin(both, &t[11], 2, NULL))
			return -1;
		img = t[11];
	}
	*out = img;
	return 0;
}

// libvips' reducers take factors up to 1,000,000, and a source within the
// pixel limit can need more (1×50,000,000 to one pixel: 50 million): past
// max_reduce, resize box-shrinks by a whole factor first, so that what is
// left is an ordinary resize.
static const double max_reduce = 100000.0;

static int pre_shrink_factor(double scale) {
	double factor = 1.0 / scale;
	return factor > max_reduce ? (int) (factor / max_reduce) + 1 : 1;
}

// resize scales in by hscale × vscale (Lanczos 3), in two steps for the
// factors a single reducer cannot take.
static int resize(VipsImage *in, VipsImage **out, double hscale, double vscale) {
	int hpre = pre_shrink_factor(hscale), vpre = pre_shrink_factor(vscale);
	VipsImage *shrunk;
	int rc;

	if (hpre == 1 && vpre == 1)
		return vips_resize(in, out, hscale, "vscale", vscale, NULL);
	if (vips_shrink(in, &shrunk, hpre, vpre, NULL))
		return -1;
	rc = vips_resize(shrunk, out, hscale * hpre, "vscale", vscale * vpre, NULL);
	g_object_unref(shrunk);
	return rc;
}

int imgedge_probe(const void *buf, size_t len, imgedge_header *h) {
	return settled(probe(buf, len, h));
}

void imgedge_probe_release(imgedge_header *h) {
	g_clear_object((VipsImage **) &h->image);
	h->icc = NULL;
	h->icc_len = 0;
}

// orientation_of is an image's EXIF orientation, 1 where it has none or
// an invalid one.
static int orientation_of(VipsImage *img) {
	int orientation = 1;
	if (vips_image_get_typeof(img, VIPS_META_ORIENTATION) &&
		vips_image_get_int(img, VIPS_META_ORIENTATION, &orientation))
		orientation = 1;
	return orientation < 1 || orientation > 8 ? 1 : orientation;
}

// fit resizes a decoded image to exactly o's box, upright. Its steps, and
// the result, are held by scope.
static int fit(VipsObject *scope, VipsImage *img, const imgedge_opts *o, VipsImage **out) {
	VipsImage **t = (VipsImage **) vips_object_local_array(scope, 7);
	int orientation = orientation_of(img), turned = orientation >= 5, tw, th, w, h, alpha;
	double hscale, vscale;
	VipsBandFormat format;

	// The box in stored orientation: resize first, orient the small result.
	tw = turned ? o->height : o->width;
	th = turned ? o->width : o->height;
	w = vips_image_get_width(img);
	h = vips_image_get_height(img);
	hscale = (double) tw / w;
	vscale = (double) th / h;
	if (o->cover)
		hscale = vscale = VIPS_MAX(hscale, vscale);

	// Resampling colour and alpha separately darkens edges and lets hidden
	// colour bleed into transparent areas: premultiply around the resample.
	alpha = vips_image_hasalpha(img) && (hscale != 1.0 || vscale != 1.0);
	format = vips_image_get_format(img);
	if (alpha) {
		if (vips_premultiply(img, &t[0], NULL))
			return -1;
		img = t[0];
	}
	if (resize(img, &t[1], hscale, vscale))
		return -1;
	img = t[1];
	if (alpha) {
		if (vips_unpremultiply(img, &t[2], NULL) || vips_cast(t[2], &t[3], format, NULL))
			return -1;
		img = t[3];
	}
	if (orientation > 1) {
		// Rotation reads out of order: hold the (small) resized image.
		if (!(t[4] = vips_image_copy_memory(img)) || vips_autorot(t[4], &t[5], NULL))
			return -1;
		img = t[5];
	}
	if (exact_size(img, &t[6], o->width, o->height))
		return -1;
	*out = t[6];
	return 0;
}

// fit_frames fits each frame of an animation (a strip of pages) to o's box
// on its own, so that no frame's resampling reads its neighbours, and joins
// them into a strip of pages again, with the animation's delays and loop
// count. Each fitted frame is rendered to memory and its pipeline dropped
// at once: what stays is the output's frames, not a pipeline per frame.
// The result is held by scope.
static int fit_frames(VipsObject *scope, VipsImage *strip, const imgedge_opts *o, VipsImage **out) {
	int page = vips_image_get_page_height(strip), width = vips_image_get_width(strip);
	int n = vips_image_get_height(strip) / page, i, rc = -1;
	VipsImage **frames, *joined = NULL;

	// A GIF cut short loads as fewer frames than its header counted (the
	// probe's), without a warning: that is damage, as a short still is.
	if (n != o->frames) {
		vips_error("imgedge", "the animation is truncated or damaged: %d of its %d frames decode", n, o->frames);
		return -1;
	}
	frames = g_new0(VipsImage *, n);

	for (i = 0; i < n; i++) {
		VipsImage *frame_scope = vips_image_new(), *frame, *fitted;
		if (!vips_extract_area(strip, &frame, 0, i * page, width, page, NULL)) {
			vips_object_local(frame_scope, frame);
			if (!fit(VIPS_OBJECT(frame_scope), frame, o, &fitted))
				frames[i] = vips_image_copy_memory(fitted);
		}
		g_object_unref(frame_scope);
		if (!frames[i])
			goto done;
	}
	if (vips_arrayjoin(frames, &joined, n, "across", 1, NULL) || vips_copy(joined, out, NULL))
		goto done;
	vips_object_local(scope, *out);
	vips_image_set_int(*out, VIPS_META_PAGE_HEIGHT, o->height);
	rc = 0;
done:
	if (joined)
		g_object_unref(joined);
	for (i = 0; i < n; i++)
		if (frames[i])
			g_object_unref(frames[i]);
	g_free(frames);
	return rc;
}

int imgedge_process(const void *buf, size_t len, const imgedge_opts *o,
	void **out, size_t *outlen, int *ow, int *oh, int *obands) {
	VipsImage *base = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 1);
	VipsImage *decoded, *fitted; // base holds them
	int rc = -1;

	if (load(buf, len, o, &t[0]))
		goto done;
	decoded = t[0];
	if ((o->cicp_primaries || o->cicp_transfer) && to_display(VIPS_OBJECT(base), t[0], o, &decoded))
		goto done;
	if (o->animate ? fit_frames(VIPS_OBJECT(base), decoded, o, &fitted) : fit(VIPS_OBJECT(base), decoded, o, &fitted))
		goto done;
	*ow = o->width;
	*oh = o->height;
	rc = finish(base, fitted, o, out, outlen, obands);
done:
	g_object_unref(base);
	vips_thread_shutdown();
	return settled(rc ? -1 : 0);
}

static VipsImage *from_raw(const void *pix, size_t len, int width, int height, int bands) {
	VipsImage *img = vips_image_new_from_memory(pix, len, width, height, bands, VIPS_FORMAT_UCHAR);
	if (img)
		img->Type = bands >= 3 ? VIPS_INTERPRETATION_sRGB : VIPS_INTERPRETATION_B_W;
	return img;
}

int imgedge_encode_raw(const void *pix, size_t len, int width, int height, int bands,
	const imgedge_opts *o, void **out, size_t *outlen) {
	VipsImage *base = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 1);
	int obands, rc = -1;

	if ((t[0] = from_raw(pix, len, width, height, bands)))
		rc = finish(base, t[0], o, out, outlen, &obands);
	g_object_unref(base);
	vips_thread_shutdown();
	return settled(rc ? -1 : 0);
}

int imgedge_viewed(const void *buf, size_t len, int width, int height, int bands,
	void **out, size_t *outlen, int *ow, int *oh) {
	VipsImage *base = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 4);
	VipsImage *img;
	int rc = -1;

	if (width > 0)
		t[0] = from_raw(buf, len, width, height, bands);
	else
		t[0] = open_buffer(buf, len, 0, VIPS_FAIL_ON_WARNING);
	if (!t[0] || to_srgb(t[0], &t[1]))
		goto done;
	img = t[1];
	if (vips_image_hasalpha(img)) {
		if (flatten_white(img, &t[2]))
			goto done;
		img = t[2];
	}
	if (vips_image_get_bands(img) != 3) {
		// to_srgb gives 3 bands (plus alpha, flattened away); be sure.
		if (vips_extract_band(img, &t[3], 0, "n", 3, NULL))
			goto done;
		img = t[3];
	}
	*ow = vips_image_get_width(img);
	*oh = vips_image_get_height(img);
	*out = vips_image_write_to_memory(img, outlen);
	rc = *out ? 0 : -1;
done:
	g_object_unref(base);
	vips_thread_shutdown();
	return settled(rc);
}
