//go:build report

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// panGIF is an animated GIF made from a photo as GIFs of video often are:
// frames of 480×320 panning across it (12 frames, 100 ms each), each
// dithered onto the web-safe Plan 9 palette.
func panGIF(t *testing.T, photo []byte) []byte {
	src, err := jpeg.Decode(bytes.NewReader(photo))
	if err != nil {
		t.Fatal(err)
	}
	anim := &gif.GIF{}
	b := src.Bounds()
	for i := range 12 {
		frame := image.NewPaletted(image.Rect(0, 0, 480, 320), palette.Plan9)
		at := image.Pt(b.Min.X+(b.Dx()-480)*i/12, b.Min.Y+(b.Dy()-320)*i/24)
		draw.FloydSteinberg.Draw(frame, frame.Bounds(), src, at)
		anim.Image, anim.Delay = append(anim.Image, frame), append(anim.Delay, 10)
	}
	var out bytes.Buffer
	if err := gif.EncodeAll(&out, anim); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// writeAnimationSavings stores an animated GIF made from each photo and asks
// EnsureVariant for it as the edge does (preset "optimized", and 320 px
// wide, format negotiated) for an AVIF viewer, which gets an animated WebP,
// and for a viewer of JPEG alone, which gets the original. The score is the
// first frame's, against the GIF's first frame.
func writeAnimationSavings(t *testing.T, b *strings.Builder, svc *transform.Service, st transform.Store, proc transform.Processor, photos []string) {
	fmt.Fprint(b, "\nAnimations: a GIF panning across each photo (12 frames of 480×320, dithered onto the Plan 9 palette), as the edge asks for it; SSIMULACRA2 of the first frame against the GIF's; CPU of the call.\n\n")
	fmt.Fprint(b, "| animation | GIF | AVIF viewer, `optimized` | AVIF viewer, 320 px | AVIF viewer, `best` (searched on the first frame) | JPEG-only viewer |\n|---|---:|---:|---:|---:|---:|\n")
	put := putVia(t, st)
	for _, photo := range photos {
		data, err := os.ReadFile(photo)
		if err != nil {
			t.Fatal(err)
		}
		anim := panGIF(t, data)
		key := "animations/" + strings.TrimSuffix(filepath.Base(photo), filepath.Ext(photo)) + ".gif"
		put(key, anim)
		first := reference(t, proc, anim)
		fmt.Fprintf(b, "| %s | %d B |", key, len(anim))
		for _, call := range []struct {
			preset string
			spec   variant.Spec
			viewer variant.Class
		}{
			{variant.PresetOptimized, variant.Spec{}, variant.ClassAVIF},
			{variant.PresetOptimized, variant.Spec{Width: 320}, variant.ClassAVIF},
			{variant.PresetOptimized, variant.Spec{Format: variant.FormatBest}, variant.ClassAVIF},
			{variant.PresetOptimized, variant.Spec{}, variant.ClassJPEG},
		} {
			start := processCPU()
			res, err := svc.EnsureVariant(context.Background(), bucket, key, transform.Request{Variant: variant.Request{Preset: call.preset, Override: call.spec, Viewer: call.viewer}})
			took := processCPU() - start
			if err != nil {
				t.Fatal(err)
			}
			if res.Key == key {
				fmt.Fprintf(b, " the original (%s, %.2f s) |", res.Outcome, took.Seconds())
				continue
			}
			out, _, err := st.Get(context.Background(), bucket, res.Key, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := proc.Probe(out)
			if err != nil {
				t.Fatal(err)
			}
			score := "—"
			if got.Width*got.Height == first.Pixels() { // the GIF's own size
				if s, err := first.Score(out); err == nil {
					score = fmt.Sprintf("%.1f", s)
				}
			}
			q := fmt.Sprintf("q%d", res.Spec.Quality)
			fmt.Fprintf(b, " %s %s, %d frames, %d×%d, %d B (%.1f%%, %s, %.2f s) |", got.Format, q, got.Frames, got.Width, got.Height, res.Size, 100*(1-float64(res.Size)/float64(len(anim))), score, took.Seconds())
		}
		fmt.Fprintln(b)
	}
}
