package e2e

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/s3test"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/store/local"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

func TestEnsureVariantLifecycle(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, nil)
		original := testimages.JPEG(1200, 900, 97)
		put("photos/cat.jpg", original)
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photos/cat.jpg"}

		// Created: stored, readable, a valid JPEG, smaller, same size as the original.
		first := ensure(t, h, req)
		if first.Outcome != imgedgev1.Outcome_OUTCOME_CREATED {
			t.Fatalf("first call: outcome %v, want CREATED", first.Outcome)
		}
		if first.Key != "ProcessedImages/full_q90/photos/cat.jpg.jpg" || first.Key != first.VariantKey {
			t.Errorf("key %q, variant key %q", first.Key, first.VariantKey)
		}
		stored := get(first.Key)
		if int64(len(stored)) != first.Size || first.Size >= int64(len(original)) || first.OriginalSize != int64(len(original)) {
			t.Errorf("stored %d bytes, response says %d, original %d (response %d)", len(stored), first.Size, len(original), first.OriginalSize)
		}
		img, format, err := testimages.Decode(stored)
		if err != nil || format != "jpeg" || img.Bounds().Dx() != 1200 || img.Bounds().Dy() != 900 {
			t.Fatalf("stored variant: %v %s %v", err, format, img.Bounds())
		}
		if first.ContentType != "image/jpeg" || first.Width != 1200 || first.Height != 900 || first.Quality != 90 {
			t.Errorf("response: %v", first)
		}

		// Already existed: no transform, no write.
		second := ensure(t, h, req)
		if second.Outcome != imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED || second.Key != first.Key || second.Size != first.Size {
			t.Errorf("second call: %v", second)
		}
		if n := h.proc.runs.Load(); n != 1 {
			t.Errorf("%d transforms after two calls, want 1", n)
		}

		// Overwriting the original makes the variant stale: the next call rebuilds.
		put("photos/cat.jpg", testimages.JPEG(800, 600, 97))
		third := ensure(t, h, req)
		if third.Outcome != imgedgev1.Outcome_OUTCOME_CREATED || third.Width != 800 {
			t.Fatalf("after overwrite: %v", third)
		}
		if img, _, err := testimages.Decode(get(third.Key)); err != nil || img.Bounds().Dx() != 800 {
			t.Fatalf("rebuilt variant: %v", err)
		}
		if n := h.proc.runs.Load(); n != 2 {
			t.Errorf("%d transforms after the rebuild, want 2", n)
		}
		if again := ensure(t, h, req); again.Outcome != imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED {
			t.Errorf("after rebuild: %v", again.Outcome)
		}
	})
}

func TestEnsureVariantFormatsAndPresets(t *testing.T) {
	st := newLocalStore(t)
	h := startServer(t, st, nil)
	putVia(t, st)("a.jpg", testimages.JPEG(1000, 800, 95))
	tests := []struct {
		req         *imgedgev1.EnsureVariantRequest
		key, ctype  string
		width, high uint32
	}{
		{&imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Preset: "thumbnail", Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/avif,image/webp,*/*"}}}, "ProcessedImages/w320_h320_cover_q50/a.jpg.avif", "image/avif", 320, 320},
		{&imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Preset: "small", Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/webp,*/*"}}}, "ProcessedImages/w480_q75/a.jpg.webp", "image/webp", 480, 384},
		{&imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Preset: "small", Viewer: &imgedgev1.VariantSpec_Accept{Accept: "*/*"}}}, "ProcessedImages/w480_q80/a.jpg.jpg", "image/jpeg", 480, 384},
		{&imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(100), Format: imgedgev1.Format_FORMAT_PNG}}, "ProcessedImages/w100/a.jpg.png", "image/png", 100, 80},
		{&imgedgev1.EnsureVariantRequest{Variant: &imgedgev1.VariantSpec{Preset: "small", Quality: proto.Uint32(60), Format: imgedgev1.Format_FORMAT_JPEG, Progressive: true}}, "ProcessedImages/w480_q60_prog/a.jpg.jpg", "image/jpeg", 480, 384},
	}
	for _, tt := range tests {
		tt.req.Bucket, tt.req.Key = bucket, "a.jpg"
		resp := ensure(t, h, tt.req)
		if resp.Key != tt.key || resp.ContentType != tt.ctype || resp.Width != tt.width || resp.Height != tt.high {
			t.Errorf("%v: got %s %s %d×%d, want %s %s %d×%d", tt.req, resp.Key, resp.ContentType, resp.Width, resp.Height, tt.key, tt.ctype, tt.width, tt.high)
		}
	}
}

func TestConcurrentIdenticalCallsCollapse(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, nil)
		put("burst.jpg", testimages.JPEG(1600, 1200, 95))
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "burst.jpg", Variant: &imgedgev1.VariantSpec{Preset: "medium"}}
		var wg sync.WaitGroup
		keys := make([]string, 16)
		for i := range keys {
			wg.Go(func() { keys[i] = ensure(t, h, req).Key })
		}
		wg.Wait()
		for _, k := range keys {
			if k != keys[0] || !strings.HasPrefix(k, "ProcessedImages/") {
				t.Fatalf("keys differ: %q", keys)
			}
		}
		if runs, puts := h.proc.runs.Load(), h.store.puts.Load(); runs != 1 || puts != 1 {
			t.Errorf("16 identical calls: %d transforms and %d writes, want 1 and 1", runs, puts)
		}
	})
}

func TestLargerVariantServesOriginal(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, nil)
		// Noise at quality 40 grows when recompressed at quality 90.
		put("noise.jpg", testimages.NoiseJPEG(400, 300, 40))
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "noise.jpg"}
		for i := range 2 {
			resp := ensure(t, h, req)
			if resp.Outcome != imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER || resp.Key != "noise.jpg" || resp.Size != resp.OriginalSize {
				t.Fatalf("call %d: %v", i, resp)
			}
		}
		if n := h.proc.runs.Load(); n != 1 {
			t.Errorf("%d transforms, want 1: the decision must be remembered", n)
		}
		if _, err := st.Head(context.Background(), bucket, "ProcessedImages/full_q90/noise.jpg.jpg"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a variant larger than its original was stored: %v", err)
		}
	})
}

// TestAnimations: an animated GIF asked for in WebP, or negotiated for a
// viewer of WebP or AVIF, is an animated WebP of every frame, on both
// stores, made once; for a viewer of neither, or in a format that keeps no
// frames, EnsureVariant answers ORIGINAL_KEPT with the original's key,
// without decoding it, and again on the next call, as for an animation of
// more frames than libvips animates. Transform makes an
// animated WebP too (for an AVIF viewer as well), and a still image of the
// first frame in a format asked for by name that keeps no frames.
func TestAnimations(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, nil)
		anim := testimages.AnimatedGIF(120, 90, 4)
		put("banner.gif", anim)
		avifViewer := &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_AUTO, Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/avif,image/webp,*/*"}}
		for _, tc := range []struct {
			variant *imgedgev1.VariantSpec
			key     string // "" for the original
			width   int
		}{
			{avifViewer, "ProcessedImages/full_q75/banner.gif.webp", 120},
			{&imgedgev1.VariantSpec{Width: ptr(uint32(60)), Format: imgedgev1.Format_FORMAT_WEBP}, "ProcessedImages/w60_q75/banner.gif.webp", 60},
			{&imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_AUTO, Viewer: &imgedgev1.VariantSpec_Accept{Accept: "*/*"}}, "", 0},
			{&imgedgev1.VariantSpec{Width: ptr(uint32(60)), Format: imgedgev1.Format_FORMAT_AVIF}, "", 0},
		} {
			runs := h.proc.runs.Load()
			for i := range 2 {
				resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "banner.gif", Variant: tc.variant})
				if tc.key == "" {
					if resp.Outcome != imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT || resp.Key != "banner.gif" || resp.Size != int64(len(anim)) {
						t.Fatalf("call %d, %v: %v; want the original kept", i, tc.variant, resp)
					}
					continue
				}
				if resp.Key != tc.key || resp.ContentType != "image/webp" || resp.Size >= int64(len(anim)) {
					t.Fatalf("call %d, %v: %v; want a WebP smaller than the original at %s", i, tc.variant, resp, tc.key)
				}
				info, err := h.proc.Probe(get(resp.Key))
				if err != nil || info.Frames != 4 || info.Width != tc.width {
					t.Errorf("%s: %+v, %v; want 4 frames %d px wide", resp.Key, info, err, tc.width)
				}
			}
			want := int64(1) // made once
			if tc.key == "" {
				want = 0 // never decoded
			}
			if h.proc.runs.Load()-runs != want {
				t.Errorf("%v: %d transforms, want %d", tc.variant, h.proc.runs.Load()-runs, want)
			}
		}
		// libvips animates up to 9,999 frames: an animation of more is kept.
		long := testimages.TinyFramesGIF(transform.MaxAnimationFrames + 1)
		put("long.gif", long)
		for i := range 2 {
			resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "long.gif", Variant: avifViewer})
			if resp.Outcome != imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT || resp.Key != "long.gif" || resp.Size != int64(len(long)) {
				t.Fatalf("call %d for an animation of %d frames: %v; want the original kept", i, transform.MaxAnimationFrames+1, resp)
			}
		}
		// An animated AVIF (an image sequence, which libvips reads as its
		// first frame alone) is kept for every viewer, and Transform makes a
		// still image of its first frame.
		seq, err := os.ReadFile(filepath.Join("..", "internal", "imaging", "testdata", "animated.avif"))
		if err != nil {
			t.Fatal(err)
		}
		put("loop.avif", seq)
		for _, v := range []*imgedgev1.VariantSpec{avifViewer, {Width: ptr(uint32(32)), Format: imgedgev1.Format_FORMAT_JPEG}} {
			resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "loop.avif", Variant: v})
			if resp.Outcome != imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT || resp.Key != "loop.avif" || resp.Size != int64(len(seq)) {
				t.Fatalf("%v for an animated AVIF: %v; want the original kept", v, resp)
			}
		}
		if _, result := transformCall(t, h, &imgedgev1.VariantSpec{Width: ptr(uint32(32)), Format: imgedgev1.Format_FORMAT_JPEG}, seq); result.Width != 32 || result.Height != 24 {
			t.Errorf("Transform of an animated AVIF: %v; want its first frame, 32×24", result)
		}
		out, result := transformCall(t, h, &imgedgev1.VariantSpec{Width: ptr(uint32(60)), Format: imgedgev1.Format_FORMAT_PNG}, anim)
		if result.Width != 60 || result.Height != 45 || len(out) == 0 {
			t.Errorf("Transform of the animation: %v", result)
		}
		out, result = transformCall(t, h, &imgedgev1.VariantSpec{Width: ptr(uint32(60)), Format: imgedgev1.Format_FORMAT_WEBP}, anim)
		if info, err := h.proc.Probe(out); err != nil || info.Frames != 4 || result.Width != 60 {
			t.Errorf("Transform of the animation as WebP: %v, %+v, %v; want 4 frames 60 px wide", result, info, err)
		}
		out, result = transformCall(t, h, avifViewer, anim)
		if info, err := h.proc.Probe(out); err != nil || info.Format != "webp" || info.Frames != 4 || result.Format != imgedgev1.Format_FORMAT_WEBP {
			t.Errorf("Transform of the animation for an AVIF viewer: %v, %+v, %v; want the animated WebP", result, info, err)
		}
	})
}

func TestTransformStreamsLargeImages(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := startServer(t, st, nil)
	// A noisy PNG well over gRPC's 4 MiB message limit.
	img := image.NewRGBA(image.Rect(0, 0, 1400, 1100))
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255 // opaque
		}
	}
	var src bytes.Buffer
	if err := png.Encode(&src, img); err != nil {
		t.Fatal(err)
	}
	if src.Len() <= 4<<20 {
		t.Fatalf("test input is only %d bytes", src.Len())
	}
	out, result := transformCall(t, h, &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_PNG}, src.Bytes())
	if int64(len(out)) != result.Size || len(out) <= 4<<20 {
		t.Fatalf("got %d bytes (result says %d), want a > 4 MiB PNG", len(out), result.Size)
	}
	back, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if d := testimages.MeanAbsDiff(img, back); d > 0.5 {
		t.Errorf("lossless round trip differs by %.2f per channel", d)
	}
	small, result := transformCall(t, h, &imgedgev1.VariantSpec{Width: proto.Uint32(700), Format: imgedgev1.Format_FORMAT_WEBP}, src.Bytes())
	if result.Width != 700 || result.Height != 550 || result.ContentType != "image/webp" || len(small) == 0 {
		t.Errorf("resize through Transform: %v", result)
	}
}

func TestBadInputs(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, func(c *config.Config) { c.MaxSourcePixels = 50_000_000 })
		jpg := testimages.JPEG(300, 200, 90)
		put("bad/empty.jpg", []byte{})
		put("bad/truncated.jpg", jpg[:len(jpg)*2/3])
		put("bad/text.jpg", []byte("hello, I am not a JPEG\n"))
		put("bad/bomb.png", testimages.BombPNG(30000, 30000))
		put("good.jpg", jpg)

		tests := []struct {
			name string
			req  *imgedgev1.EnsureVariantRequest
			code codes.Code
			msg  string
		}{
			{"zero bytes", &imgedgev1.EnsureVariantRequest{Key: "bad/empty.jpg"}, codes.InvalidArgument, "empty"},
			{"truncated jpeg", &imgedgev1.EnsureVariantRequest{Key: "bad/truncated.jpg"}, codes.InvalidArgument, "truncated"},
			{"text named .jpg", &imgedgev1.EnsureVariantRequest{Key: "bad/text.jpg"}, codes.InvalidArgument, "not a JPEG"},
			{"decompression bomb", &imgedgev1.EnsureVariantRequest{Key: "bad/bomb.png"}, codes.ResourceExhausted, "900000000 pixels"},
			{"missing key", &imgedgev1.EnsureVariantRequest{Key: "nope.jpg"}, codes.NotFound, "nope.jpg"},
			{"dot-dot", &imgedgev1.EnsureVariantRequest{Key: "photos/../../etc/passwd"}, codes.InvalidArgument, `".."`},
			{"processed prefix", &imgedgev1.EnsureVariantRequest{Key: "ProcessedImages/full_q90/good.jpg.jpg"}, codes.FailedPrecondition, "processed prefix"},
			{"unknown preset", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Variant: &imgedgev1.VariantSpec{Preset: "huge"}}, codes.InvalidArgument, `unknown preset "huge"`},
			{"width 0", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(0)}}, codes.InvalidArgument, "width 0"},
			{"width 100000", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(100000)}}, codes.InvalidArgument, "width 100000"},
			{"quality 0", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Variant: &imgedgev1.VariantSpec{Quality: proto.Uint32(0)}}, codes.InvalidArgument, "quality 0"},
			{"unknown bucket", &imgedgev1.EnsureVariantRequest{Bucket: "no-such-bucket", Key: "good.jpg"}, codes.NotFound, ""},
			{"invalid bucket", &imgedgev1.EnsureVariantRequest{Bucket: "../x", Key: "good.jpg"}, codes.InvalidArgument, "bucket"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.req.Bucket == "" {
					tt.req.Bucket = bucket
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := h.client.EnsureVariant(ctx, tt.req)
				if st := status.Convert(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
					t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.msg)
				}
				// The server keeps serving.
				hc, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("health after a bad input: %v %v", hc, err)
				}
			})
		}
		// Nothing was written under the processed prefix.
		if written := processedKeys(t, st); len(written) > 0 {
			t.Errorf("objects left after bad inputs: %q", written)
		}
		// A good request still works.
		if resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "good.jpg", Variant: &imgedgev1.VariantSpec{Preset: "small"}}); resp.Outcome == imgedgev1.Outcome_OUTCOME_UNSPECIFIED {
			t.Errorf("good request after bad ones: %v", resp)
		}
	})
}

func TestTransformBadInputs(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := startServer(t, st, func(c *config.Config) { c.MaxStreamBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(msgs ...*imgedgev1.TransformRequest) error {
		stream, err := h.client.Transform(ctx)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := stream.Send(m); err != nil {
				break
			}
		}
		stream.CloseSend()
		_, err = stream.Recv()
		return err
	}
	opts := &imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Variant{Variant: &imgedgev1.VariantSpec{}}}
	chunk := func(b []byte) *imgedgev1.TransformRequest {
		return &imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Chunk{Chunk: b}}
	}
	big := make([]byte, 600<<10)
	tests := []struct {
		name string
		msgs []*imgedgev1.TransformRequest
		code codes.Code
	}{
		{"no options", []*imgedgev1.TransformRequest{chunk(testimages.JPEG(10, 10, 90))}, codes.InvalidArgument},
		{"no image", []*imgedgev1.TransformRequest{opts}, codes.InvalidArgument},
		{"options twice", []*imgedgev1.TransformRequest{opts, opts}, codes.InvalidArgument},
		{"over the stream limit", []*imgedgev1.TransformRequest{opts, chunk(big), chunk(big)}, codes.ResourceExhausted},
		{"not an image", []*imgedgev1.TransformRequest{opts, chunk([]byte("GIF89a but not really"))}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		if err := call(tt.msgs...); status.Code(err) != tt.code {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.code)
		}
	}
}

// TestStalledUploadGivesItsPlaceBack: a Transform is admitted at its first
// message, so a caller that then stopped sending, with no deadline of its
// own, held its place in the pool for as long as its connection lived (the
// call timeout bounded its context, not its stream's Recv): as many such
// callers as places refused every other Transform and every build. The
// call timeout now ends such a stream, DeadlineExceeded, and frees its
// place.
func TestStalledUploadGivesItsPlaceBack(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const callTimeout = 2 * time.Second
	h := startServer(t, st, func(c *config.Config) { c.Workers, c.Queue, c.CallTimeout = 1, 0, callTimeout })
	jpg := testimages.JPEG(64, 48, 90)
	opts := &imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Variant{Variant: &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_PNG}}}
	chunk := func(b []byte) *imgedgev1.TransformRequest {
		return &imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Chunk{Chunk: b}}
	}
	// open sends a variant and, when all is set, the whole image; the
	// answer comes on the channel.
	open := func(ctx context.Context, all bool) <-chan error {
		answer := make(chan error, 1)
		stream, err := h.client.Transform(ctx)
		if err != nil {
			answer <- err
			return answer
		}
		_ = stream.Send(opts)
		if all {
			_ = stream.Send(chunk(jpg))
			_ = stream.CloseSend()
		} else {
			_ = stream.Send(chunk(jpg[:100])) // and then nothing, with no deadline
		}
		go func() {
			_, err := stream.Recv()
			answer <- err
		}()
		return answer
	}
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return <-open(ctx, true)
	}

	// The service's one place goes to the stalled upload once other calls
	// (which hold it only while they run) see it taken; should one of
	// them hold it when the upload's first message is read, the upload is
	// refused and opened again.
	var stalled <-chan error
	var start time.Time
	for admitted := false; !admitted; {
		start, stalled = time.Now(), open(context.Background(), false)
		for {
			err := call()
			if status.Code(err) == codes.ResourceExhausted {
				admitted = true
				break
			}
			if err != nil {
				t.Fatalf("a Transform beside the stalled upload: %v", err)
			}
			select {
			case err := <-stalled:
				if status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("the stalled upload ended with %v before the call timeout", err)
				}
			default:
				continue
			}
			break
		}
	}
	select {
	case err := <-stalled:
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("the stalled upload ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(5 * callTimeout):
		t.Fatalf("the stalled upload still held its place %v after it began (call timeout %v)", time.Since(start).Round(time.Second), callTimeout)
	}
	if err := call(); err != nil {
		t.Errorf("a Transform once the stalled upload ended: %v", err)
	}
}

func TestS3ConditionalWrites(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, bucket)
	st := s3store.NewFromClient(srv.Client())
	ctx := context.Background()
	first, err := st.Put(ctx, bucket, "k", []byte("one"), store.PutOptions{IfNoneMatch: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, bucket, "k", []byte("two"), store.PutOptions{IfNoneMatch: true}); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Fatalf("second create: %v, want ErrPreconditionFailed", err)
	}
	if _, err := st.Put(ctx, bucket, "k", []byte("three"), store.PutOptions{IfMatch: `"not-the-etag"`}); !errors.Is(err, store.ErrPreconditionFailed) {
		t.Fatalf("replace with a wrong ETag: %v, want ErrPreconditionFailed", err)
	}
	if _, err := st.Put(ctx, bucket, "k", []byte("four"), store.PutOptions{IfMatch: first.ETag}); err != nil {
		t.Fatalf("replace with the right ETag: %v", err)
	}
	out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	if string(body) != "four" {
		t.Errorf("object holds %q, want four", body)
	}
	if _, err := st.Head(ctx, bucket, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Head(missing) = %v, want ErrNotFound", err)
	}
	if _, err := st.Head(ctx, "no-such-bucket", "k"); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrBucketNotFound) {
		t.Errorf("Head in a missing bucket = %v, want a not-found error", err)
	}
	if _, _, err := st.Get(ctx, bucket, "k", 2); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("Get over the limit = %v, want ErrTooLarge", err)
	}
}

// processedKeys lists what is stored under the processed prefix.
func processedKeys(t *testing.T, st transform.Store) []string {
	t.Helper()
	var keys []string
	err := st.Walk(context.Background(), bucket, "ProcessedImages/", "", func(o store.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("listing the processed prefix: %v", err)
	}
	return keys
}
