package e2e

import (
	"bytes"
	"context"
	"image"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

func thinJPEG(w, h int) []byte {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// TestThinImagesGetVariants: the shapes that once aborted the whole
// process answer OK with a variant of at least one pixel a side, through
// EnsureVariant and Transform alike.
func TestThinImagesGetVariants(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	tests := []struct {
		name         string
		w, h         int
		req          *imgedgev1.EnsureVariantRequest
		wantW, wantH uint32
	}{
		{"2400×3 at width 300", 2400, 3, &imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(300)}}, 300, 1},
		{"20000×1 at width 320", 20000, 1, &imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(320)}}, 320, 1},
		{"4000×6 with preset small", 4000, 6, &imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Preset: "small"}}, 480, 1},
		{"3×2400 at height 300", 3, 2400, &imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Height: proto.Uint32(300)}}, 1, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := thinJPEG(tt.w, tt.h)
			key := strings.ReplaceAll(tt.name, " ", "_") + ".jpg"
			putVia(t, st)(key, src)
			tt.req.Bucket, tt.req.Key = bucket, key
			resp := ensure(t, h, tt.req)
			if resp.Outcome == imgedgev1.Outcome_OUTCOME_CREATED && (resp.Width != tt.wantW || resp.Height != tt.wantH) {
				t.Errorf("EnsureVariant: %d×%d, want %d×%d", resp.Width, resp.Height, tt.wantW, tt.wantH)
			}
			out, res := transformCall(t, h, tt.req.Variant, src)
			if res.GetWidth() != tt.wantW || res.GetHeight() != tt.wantH || len(out) == 0 {
				t.Errorf("Transform: %d×%d (%d bytes), want %d×%d", res.GetWidth(), res.GetHeight(), len(out), tt.wantW, tt.wantH)
			}
		})
	}
}

// TestDamagedOriginalsStoreNothing: truncated, broken or hostile originals
// answer InvalidArgument (ResourceExhausted for what holds too much), and
// nothing is written under the processed prefix.
func TestDamagedOriginalsStoreNothing(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), _ func(string) []byte) {
		h := startServer(t, st, nil)
		jpg := testimages.JPEG(640, 480, 90)
		png := testimages.PNG(640, 480)
		anim := testimages.AnimatedGIF(120, 90, 4)
		damaged := map[string][]byte{
			// The last frame cut short: libvips would draw it over the one
			// before, without a warning, into a WebP of fewer frames.
			"cut.gif":     anim[:len(anim)-3],
			"cut.jpg":     jpg[:len(jpg)/2],
			"cut-eoi.jpg": append(append([]byte{}, jpg[:len(jpg)/2]...), 0xFF, 0xD9),
			"cut.png":     png[:len(png)/2],
			// Valid, but in 2,649 scans, each a pass over the whole image.
			"scans.jpg": testimages.ProgressiveJPEG(1000, 750, 3, true),
			// Valid, but its colour profile's float tags list a matrix and
			// a curve set 5,000 times each, and lcms would take every
			// colour it samples through all of them.
			"float-profile.jpg": testimages.WithAPP2Profile(jpg, testimages.FloatProfile(10000)),
			// Valid, but in 5,000 empty APP13 segments, each of which
			// libjpeg would keep in an allocation of its own.
			"segments.jpg": append(append(append([]byte{}, jpg[:2]...), bytes.Repeat([]byte{0xFF, 0xED, 0, 2}, 5000)...), jpg[2:]...),
		}
		// Valid, but its comment inflates to 40 MB, which libpng would
		// inflate whole and libvips copy; and a WebP whose codes take more
		// memory than the budget.
		tooLarge := map[string][]byte{
			"text.png": testimages.WithText(png, "zTXt", true, bytes.Repeat([]byte("A"), 40<<20)),
			// 1024×1024, naming 65,536 groups of prefix codes, for each
			// of which libwebp would allocate 12 KB of tables.
			"groups.webp": testimages.LosslessWebP(1024, 1024, 65536, 0, false),
		}
		for want, originals := range map[codes.Code]map[string][]byte{codes.InvalidArgument: damaged, codes.ResourceExhausted: tooLarge} {
			for key, data := range originals {
				put(key, data)
				_, err := h.client.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: key, Variant: &imgedgev1.VariantSpec{Preset: "small", Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/webp"}}})
				if status.Code(err) != want {
					t.Errorf("%s: %v, want %v", key, err, want)
				}
			}
		}
		if stored := processedKeys(t, st); len(stored) > 0 {
			t.Errorf("stored for damaged originals: %v", stored)
		}
	})
}

// TestLocalStoreRefusalsAreTheCallersProblem: a link out of the store and
// an over-long name answer PermissionDenied and InvalidArgument, not
// Unavailable (which a client would retry and count as an outage), with
// messages that name no system call.
func TestLocalStoreRefusalsAreTheCallersProblem(t *testing.T) {
	st, dir := newLocalStoreDir(t)
	h := startServer(t, st, nil)
	outside := filepath.Join(t.TempDir(), "secret.jpg")
	os.WriteFile(outside, testimages.JPEG(64, 64, 90), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, bucket, "link.jpg")); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]codes.Code{
		"link.jpg":                        codes.PermissionDenied,
		strings.Repeat("a", 300) + ".jpg": codes.InvalidArgument,
	} {
		_, err := h.client.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: key})
		msg := status.Convert(err).Message()
		if status.Code(err) != want || strings.Contains(msg, "stat") || strings.Contains(msg, "openat") {
			t.Errorf("%.20s…: %v, want %v without internals", key, err, want)
		}
	}
}

// TestWholeImageDecodersAreAdmittedWithWhatTheyHold: some decoders hold
// the whole image at full size however small the variant — a progressive
// JPEG's coefficients, libheif's and aom's frames for AVIF, libwebp's for
// WebP, a GIF's frame — and the AVIF encoder holds several frames of its
// output. Admission counts what they hold: a budget too small answers
// ResourceExhausted before the work would overrun it, and a smaller image
// of the same kind is served.
func TestWholeImageDecodersAreAdmittedWithWhatTheyHold(t *testing.T) {
	st := newLocalStore(t)
	put := putVia(t, st)
	// 64 MiB in all, 48 MiB of it for decoding.
	h := startServer(t, st, func(c *config.Config) { c.MaxMemory, c.MaxSourceBytes = 64<<20, 8<<20 })
	encode := func(f variant.Format, w, hgt int) []byte {
		src := testimages.JPEG(w, hgt, 80)
		info, err := h.proc.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.proc.Process(src, transform.Operation{Spec: variant.Spec{Format: f, Quality: 50}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		return out.Data
	}
	for _, tt := range []struct {
		name         string
		big, fits    []byte
		sameSizeAVIF bool // encoded to AVIF at its own size, not to the small preset
	}{
		// 3000×3000 4:4:4 holds 54 MB of coefficients; 1500×1500 13.5 MB.
		{"progressive JPEG", testimages.ProgressiveJPEG(3000, 3000, 3, false), testimages.ProgressiveJPEG(1500, 1500, 3, false), false},
		// ~15 bytes a pixel while decoding: 4 MP 60 MB, 1 MP 15 MB.
		{"AVIF", encode(variant.FormatAVIF, 2000, 2000), encode(variant.FormatAVIF, 1000, 1000), false},
		// ~9 bytes a pixel: 6 MP 54 MB, 2 MP 18 MB.
		{"WebP", encode(variant.FormatWebP, 3000, 2000), encode(variant.FormatWebP, 1600, 1200), false},
		// ~7 bytes a pixel (the frame, RGBA, besides the decoded image):
		// 8.75 MP 61 MB, 1.5 MP 10.5 MB.
		{"GIF", gifOf(t, 3500, 2500), gifOf(t, 1500, 1000), false},
		// The AVIF encoder holds ~20 bytes an output pixel: 4 MP 92 MB,
		// 1 MP 23 MB.
		{"AVIF output", testimages.JPEG(2000, 2000, 80), testimages.JPEG(1000, 1000, 80), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := strings.ReplaceAll(tt.name, " ", "-") + "/"
			put(dir+"big", tt.big)
			put(dir+"fits", tt.fits)
			ask := func(key string) (*imgedgev1.EnsureVariantResponse, error) {
				spec := &imgedgev1.VariantSpec{Preset: "small"}
				if tt.sameSizeAVIF {
					spec = &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_AVIF, Quality: proto.Uint32(50)}
				}
				return h.client.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: dir + key, Variant: spec})
			}
			if _, err := ask("big"); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "memory budget") {
				t.Errorf("the big one: %v, want ResourceExhausted naming the memory budget", err)
			}
			// A flat variant may be bigger than its small original: either
			// answer means it was decoded.
			res, err := ask("fits")
			if o := res.GetOutcome(); err != nil || (o != imgedgev1.Outcome_OUTCOME_CREATED && o != imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER) {
				t.Errorf("the smaller one: %v, %v; want it processed", o, err)
			}
		})
	}
}

// gifOf is a w×h GIF of stripes in the Plan 9 palette.
func gifOf(t *testing.T, w, h int) []byte {
	img := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
	for i := range img.Pix {
		img.Pix[i] = uint8(i / w % 256)
	}
	var buf bytes.Buffer
	if err := gif.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
