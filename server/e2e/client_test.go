package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

func TestClientStreamsLargeTransform(t *testing.T) {
	h := localServer(t, nil)
	c := dialClient(t, h.addr, client.WithChunkSize(64<<10))
	img := image.NewRGBA(image.Rect(0, 0, 1500, 1200))
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	var src bytes.Buffer
	if err := png.Encode(&src, img); err != nil {
		t.Fatal(err)
	}
	if src.Len() <= 4<<20 {
		t.Fatalf("input only %d bytes", src.Len())
	}
	var out bytes.Buffer
	res, err := c.Transform(context.Background(), &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_PNG}, bytes.NewReader(src.Bytes()), &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetSize() != int64(out.Len()) || out.Len() <= 4<<20 || res.GetWidth() != 1500 {
		t.Fatalf("result %v, %d bytes written", res, out.Len())
	}
	back, err := png.Decode(&out)
	if err != nil || testimages.MeanAbsDiff(img, back) > 0.5 {
		t.Fatalf("round trip: %v", err)
	}
}

func TestClientRetriesUnavailable(t *testing.T) {
	var calls atomic.Int64
	flaky := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if calls.Add(1) <= 2 {
			return nil, status.Error(codes.Unavailable, "warming up")
		}
		return handler(ctx, req)
	})
	h := localServer(t, nil, flaky)
	c := dialClient(t, h.addr)
	resp, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg"})
	if err != nil || resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED {
		t.Fatalf("EnsureVariant after two UNAVAILABLE: %v, %v", resp, err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d attempts, want 3", calls.Load())
	}
	// Other codes are not retried.
	calls.Store(10)
	_, err = c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "missing.jpg"})
	if !errors.Is(err, client.ErrNotFound) || calls.Load() != 11 {
		t.Errorf("NotFound: %v after %d attempts, want one attempt", err, calls.Load()-10)
	}
}

func TestClientAppliesDefaultDeadline(t *testing.T) {
	var remaining atomic.Int64
	probe := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if d, ok := ctx.Deadline(); ok {
			remaining.Store(int64(time.Until(d)))
		} else {
			remaining.Store(-1)
		}
		return handler(ctx, req)
	})
	h := localServer(t, nil, probe)
	c := dialClient(t, h.addr, client.WithDefaultDeadline(1500*time.Millisecond))
	if _, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg"}); err != nil {
		t.Fatal(err)
	}
	if r := time.Duration(remaining.Load()); r <= 0 || r > 1500*time.Millisecond {
		t.Errorf("server saw %v left, want the default 1.5 s deadline", r)
	}
	// A caller's own deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.EnsureVariant(ctx, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg"}); err != nil {
		t.Fatal(err)
	}
	if r := time.Duration(remaining.Load()); r < 5*time.Second {
		t.Errorf("server saw %v left, want the caller's 10 s", r)
	}
}

func TestClientErrorsIs(t *testing.T) {
	needToken := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*imgedgev1.EnsureVariantRequest); ok && r.GetKey() == "needs-auth.jpg" {
			return nil, status.Error(codes.Unauthenticated, "missing token")
		}
		return handler(ctx, req)
	})
	h := localServer(t, func(c *config.Config) { c.Buckets = []string{bucket} }, needToken)
	c := dialClient(t, h.addr)
	tests := []struct {
		req  *imgedgev1.EnsureVariantRequest
		want error
		code codes.Code
	}{
		{&imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg", Variant: &imgedgev1.VariantSpec{Preset: "nope"}}, client.ErrInvalid, codes.InvalidArgument},
		{&imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "missing.jpg"}, client.ErrNotFound, codes.NotFound},
		{&imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "ProcessedImages/x.jpg"}, client.ErrFailedPrecondition, codes.FailedPrecondition},
		{&imgedgev1.EnsureVariantRequest{Bucket: "other-bucket", Key: "a.jpg"}, client.ErrPermissionDenied, codes.PermissionDenied},
		{&imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "bomb.png"}, client.ErrTooLarge, codes.ResourceExhausted},
		{&imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "needs-auth.jpg"}, client.ErrUnauthenticated, codes.Unauthenticated},
		{&imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg", Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(0)}}, client.ErrInvalid, codes.InvalidArgument},
	}
	for _, tt := range tests {
		_, err := c.EnsureVariant(context.Background(), tt.req)
		if !errors.Is(err, tt.want) || status.Code(err) != tt.code {
			t.Errorf("%v: got %v (code %v), want errors.Is %v and code %v", tt.req, err, status.Code(err), tt.want, tt.code)
		}
	}
	// Unavailable: nothing listens there.
	dead := dialClient(t, "127.0.0.1:1", client.WithDefaultDeadline(2*time.Second))
	if _, err := dead.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg"}); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("dead server: %v", err)
	}
	// DeadlineExceeded, matching context.DeadlineExceeded too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if _, err := c.EnsureVariant(ctx, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg"}); !errors.Is(err, client.ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired deadline: %v", err)
	}
}

func TestClientRoundRobinOverReplicas(t *testing.T) {
	var counts [3]atomic.Int64
	addrs := make([]resolver.Address, 3)
	for i := range 3 {
		count := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			counts[i].Add(1)
			return handler(ctx, req)
		})
		addrs[i] = resolver.Address{Addr: localServer(t, nil, count).addr}
	}
	// A resolver that answers three addresses, as DNS does for a headless service.
	r := manual.NewBuilderWithScheme("replicas")
	r.InitialState(resolver.State{Addresses: addrs})
	c := dialClient(t, r.Scheme()+":///imgedge", client.WithDialOptions(grpc.WithResolvers(r)))
	for i := range 30 {
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "a.jpg", Variant: &imgedgev1.VariantSpec{Width: proto.Uint32(uint32(100 + i))}}
		if _, err := c.EnsureVariant(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	for i := range counts {
		if n := counts[i].Load(); n < 5 {
			t.Errorf("replica %d served %d of 30 calls: %v", i, n, fmt.Sprint(counts[0].Load(), counts[1].Load(), counts[2].Load()))
		}
	}
}
