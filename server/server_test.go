package main

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
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

const bucket = "demo"

// objectStore is what the tests need of a store: the service's interface
// plus listing, to prove nothing half-written is left behind.
type objectStore interface {
	transform.Store
	Walk(ctx context.Context, bucket, prefix, skipPrefix string, fn func(store.ObjectInfo) error) error
}

// countingStore counts successful writes.
type countingStore struct {
	objectStore
	puts atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, b, k string, data []byte, o store.PutOptions) (store.ObjectInfo, error) {
	info, err := c.objectStore.Put(ctx, b, k, data, o)
	if err == nil {
		c.puts.Add(1)
	}
	return info, err
}

// countingProcessor counts transforms run by the real libvips processor.
type countingProcessor struct {
	transform.Processor
	runs atomic.Int64
}

func (c *countingProcessor) Process(data []byte, op transform.Operation) (transform.Output, error) {
	c.runs.Add(1)
	return c.Processor.Process(data, op)
}

type harness struct {
	addr    string
	metrics http.Handler
	client  imgedgev1.ImageTransformServiceClient
	health  healthpb.HealthClient
	store   *countingStore
	proc    *countingProcessor
}

// startServer runs the real gRPC server over loopback on st.
func startServer(t *testing.T, st objectStore, mutate func(*config.Config), extra ...grpc.ServerOption) *harness {
	t.Helper()
	cfg := config.Default()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		store: &countingStore{objectStore: st},
		proc:  &countingProcessor{Processor: newProcessor(cfg)},
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv, err := newServer(cfg, h.store, h.proc, logger, &security{}, extra...)
	if err != nil {
		t.Fatal(err)
	}
	h.addr = serveOn(t, srv.grpc)
	h.metrics = srv.metrics.Handler()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = imgedgev1.NewImageTransformServiceClient(conn)
	h.health = healthpb.NewHealthClient(conn)
	return h
}

// stores runs f against the local store and against versitygw.
func stores(t *testing.T, f func(t *testing.T, st objectStore, put func(key string, data []byte), get func(key string) []byte)) {
	t.Run("local", func(t *testing.T) {
		st := newLocalStore(t)
		f(t, st, putVia(t, st), getVia(t, st))
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.Start(t)
		srv.CreateBucket(t, bucket)
		st := s3store.NewFromClient(srv.Client())
		f(t, st, putVia(t, st), getVia(t, st))
	})
}

// newLocalStore opens a local store in a temporary directory, with the test bucket.
func newLocalStore(t *testing.T) *local.Store {
	t.Helper()
	st, _ := newLocalStoreDir(t)
	return st
}

// newLocalStoreDir is newLocalStore, also returning the store's directory
// (for a server process or an origin reading the same files).
func newLocalStoreDir(t *testing.T) (*local.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	return st, dir
}

func putVia(t *testing.T, st objectStore) func(string, []byte) {
	return func(key string, data []byte) {
		t.Helper()
		if _, err := st.Put(context.Background(), bucket, key, data, store.PutOptions{ContentType: "image/jpeg"}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
}

func getVia(t *testing.T, st objectStore) func(string) []byte {
	return func(key string) []byte {
		t.Helper()
		data, _, err := st.Get(context.Background(), bucket, key, 0)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return data
	}
}

func ensure(t *testing.T, h *harness, req *imgedgev1.EnsureVariantRequest) *imgedgev1.EnsureVariantResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.client.EnsureVariant(ctx, req)
	if err != nil {
		t.Fatalf("EnsureVariant(%v): %v", req, err)
	}
	return resp
}

func TestEnsureVariantLifecycle(t *testing.T) {
	stores(t, func(t *testing.T, st objectStore, put func(string, []byte), get func(string) []byte) {
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
		{&imgedgev1.EnsureVariantRequest{Preset: "thumbnail", Accept: "image/avif,image/webp,*/*"}, "ProcessedImages/w320_h320_cover_q50/a.jpg.avif", "image/avif", 320, 320},
		{&imgedgev1.EnsureVariantRequest{Preset: "small", Accept: "image/webp,*/*"}, "ProcessedImages/w480_q75/a.jpg.webp", "image/webp", 480, 384},
		{&imgedgev1.EnsureVariantRequest{Preset: "small", Accept: "*/*"}, "ProcessedImages/w480_q80/a.jpg.jpg", "image/jpeg", 480, 384},
		{&imgedgev1.EnsureVariantRequest{Width: proto.Uint32(100), Format: imgedgev1.Format_FORMAT_PNG}, "ProcessedImages/w100/a.jpg.png", "image/png", 100, 80},
		{&imgedgev1.EnsureVariantRequest{Preset: "small", Quality: proto.Uint32(60), Format: imgedgev1.Format_FORMAT_JPEG, Progressive: true}, "ProcessedImages/w480_q60_prog/a.jpg.jpg", "image/jpeg", 480, 384},
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
	stores(t, func(t *testing.T, st objectStore, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, nil)
		put("burst.jpg", testimages.JPEG(1600, 1200, 95))
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "burst.jpg", Preset: "medium"}
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
	stores(t, func(t *testing.T, st objectStore, put func(string, []byte), get func(string) []byte) {
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
	out, result := transformCall(t, h, &imgedgev1.TransformOptions{Format: imgedgev1.Format_FORMAT_PNG}, src.Bytes())
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
	small, result := transformCall(t, h, &imgedgev1.TransformOptions{Width: proto.Uint32(700), Format: imgedgev1.Format_FORMAT_WEBP}, src.Bytes())
	if result.Width != 700 || result.Height != 550 || result.ContentType != "image/webp" || len(small) == 0 {
		t.Errorf("resize through Transform: %v", result)
	}
}

func transformCall(t *testing.T, h *harness, opts *imgedgev1.TransformOptions, data []byte) ([]byte, *imgedgev1.TransformResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := h.client.Transform(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Options{Options: opts}}); err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1<<20)
		if err := stream.Send(&imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("Transform: %v", err)
	}
	var out bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Write(msg.GetChunk())
	}
	return out.Bytes(), first.GetResult()
}

func TestBadInputs(t *testing.T) {
	stores(t, func(t *testing.T, st objectStore, put func(string, []byte), get func(string) []byte) {
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
			{"unknown preset", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Preset: "huge"}, codes.InvalidArgument, `unknown preset "huge"`},
			{"width 0", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Width: proto.Uint32(0)}, codes.InvalidArgument, "width 0"},
			{"width 100000", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Width: proto.Uint32(100000)}, codes.InvalidArgument, "width 100000"},
			{"quality 0", &imgedgev1.EnsureVariantRequest{Key: "good.jpg", Quality: proto.Uint32(0)}, codes.InvalidArgument, "quality 0"},
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
		if resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "good.jpg", Preset: "small"}); resp.Outcome == imgedgev1.Outcome_OUTCOME_UNSPECIFIED {
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
	opts := &imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Options{Options: &imgedgev1.TransformOptions{}}}
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
func processedKeys(t *testing.T, st objectStore) []string {
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
