package imaging

/*
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
	"sync"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/transform"
)

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
