// Builds against the libvips that sharp ships (see the Makefile's libvips
// target), whose pkg-config file defines IMGEDGE_VIPS_NO_MAGICK: that build
// leaves out ImageMagick, yet bimg references its loader. No image reaches
// it here (only JPEG, PNG, WebP, AVIF/HEIF and GIF are accepted, and
// untrusted loaders are blocked), so a stub that fails is enough.
#ifdef IMGEDGE_VIPS_NO_MAGICK
#include <vips/vips.h>

int vips_magickload_buffer(void *buf, size_t len, VipsImage **out, ...) {
	vips_error("magickload_buffer", "%s", "this libvips has no ImageMagick loader");
	return -1;
}
#endif
