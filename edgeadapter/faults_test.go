package edgeadapter

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// grpcFake is a real gRPC server over loopback with a scripted answer.
type grpcFake struct {
	imgedgev1.UnimplementedImageTransformServiceServer
	code        atomic.Uint32 // codes.Code to answer with
	traceparent atomic.Value  // the last call's traceparent metadata
	reason      string        // ErrorInfo reason sent with the code
	outcome     imgedgev1.Outcome
	token       string
	calls       atomic.Int64
}

func (g *grpcFake) EnsureVariant(ctx context.Context, req *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error) {
	g.calls.Add(1)
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("traceparent")) > 0 {
		g.traceparent.Store(md.Get("traceparent")[0])
	}
	if g.token != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("authorization"); len(v) == 0 || v[0] != "Bearer "+g.token {
			return nil, status.Error(codes.Unauthenticated, "bad token")
		}
	}
	if c := codes.Code(g.code.Load()); c != codes.OK {
		st := status.New(c, "scripted failure")
		if g.reason != "" {
			st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: g.reason, Domain: "imgedge.v1"})
		}
		return nil, st.Err()
	}
	if g.outcome == imgedgev1.Outcome_OUTCOME_PENDING {
		return &imgedgev1.EnsureVariantResponse{Outcome: g.outcome, Key: req.Key, VariantKey: "ProcessedImages/full_q80/" + req.Key + ".jpg"}, nil
	}
	return &imgedgev1.EnsureVariantResponse{Outcome: imgedgev1.Outcome_OUTCOME_CREATED, Key: "ProcessedImages/full_q80/" + req.Key + ".jpg"}, nil
}

func serveFake(t *testing.T, fake *grpcFake, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	imgedgev1.RegisterImageTransformServiceServer(gs, fake)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// rawListener accepts connections and hands each to fn.
func rawListener(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go fn(c)
		}
	}()
	return lis.Addr().String()
}

// realAdapter dials the service for real, through the client package.
func realAdapter(t *testing.T, svc Service, deadline time.Duration) *Adapter {
	t.Helper()
	cfg := testConfig()
	cfg.Service = svc
	cfg.DeadlineMS = int(deadline / time.Millisecond)
	cfg.MaxWaitMS = cfg.DeadlineMS - AnswerMarginMS
	return newAdapter(t, cfg)
}

// breakerAdapter dials fake for real, with a breaker of the given settings.
func breakerAdapter(t *testing.T, fake *grpcFake, breaker BreakerConfig) *Adapter {
	t.Helper()
	cfg := testConfig()
	cfg.Service = Service{Address: serveFake(t, fake), Insecure: true}
	cfg.Breaker = breaker
	return newAdapter(t, cfg)
}

func newAdapter(t *testing.T, cfg Config) *Adapter {
	t.Helper()
	a, err := New(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestFaultsFallBackUnchanged(t *testing.T) {
	event := fixture(t, "s3_accept_webp.json")
	in := requestBytes(t, event)
	deadline := 400 * time.Millisecond

	stopped := func() string { // a port nobody listens on
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	hanging := rawListener(t, func(c net.Conn) { time.Sleep(10 * time.Second); c.Close() })
	garbage := rawListener(t, func(c net.Conn) {
		junk := make([]byte, 4096)
		rand.Read(junk)
		c.Write(junk)
		io.Copy(io.Discard, c)
	})
	tokenFake := serveFake(t, &grpcFake{token: "right"})
	// TLS failures (another CA, plaintext to TLS) are proven against the
	// real server in server/e2e (TestEdgeDialsTLS).

	tests := map[string]Service{
		"service stopped":      {Address: stopped, Insecure: true},
		"service hanging":      {Address: hanging, Insecure: true},
		"garbage from service": {Address: garbage, Insecure: true},
		"wrong token":          {Address: tokenFake, Insecure: true, Token: "wrong"},
		"no token":             {Address: tokenFake, Insecure: true},
	}
	for name, svc := range tests {
		t.Run(name, func(t *testing.T) {
			a := realAdapter(t, svc, deadline)
			start := time.Now()
			out, d, err := a.HandleEvent(context.Background(), event)
			if err != nil || d.Action != Fallback || !bytes.Equal(out, in) {
				t.Fatalf("got %s (%s), %v:\n%s", d.Action, d.Reason, err, out)
			}
			if took := time.Since(start); took > deadline+time.Second {
				t.Errorf("fell back after %v, the deadline is %v", took, deadline)
			}
		})
	}
	// The right token works through the same code path.
	svc := Service{Address: tokenFake, Insecure: true, Token: "right"}
	if _, d, _ := realAdapter(t, svc, 2*time.Second).HandleEvent(context.Background(), event); d.Action != Rewrite {
		t.Errorf("right token: %s (%s)", d.Action, d.Reason)
	}
}

func TestEachErrorCodeFallsBack(t *testing.T) {
	event := fixture(t, "s3_plain.json")
	in := requestBytes(t, event)
	for _, code := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied,
		codes.ResourceExhausted, codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.Aborted, codes.Unauthenticated} {
		fake := &grpcFake{}
		fake.code.Store(uint32(code))
		a := realAdapter(t, Service{Address: serveFake(t, fake), Insecure: true}, time.Second)
		out, d, err := a.HandleEvent(context.Background(), event)
		if err != nil || d.Action != Fallback || !bytes.Equal(out, in) {
			t.Errorf("%v: %s (%s)", code, d.Action, d.Reason)
		}
	}
}

// TestBreakerCountsOnlyTheServicesHealth: answers about one request never
// open the breaker, however many viewers send them; answers that say the
// service is unwell do.
func TestBreakerCountsOnlyTheServicesHealth(t *testing.T) {
	event := fixture(t, "s3_plain.json")
	tests := []struct {
		name   string
		code   codes.Code
		reason string
		opens  bool
	}{
		{"InvalidArgument", codes.InvalidArgument, "", false},
		{"NotFound", codes.NotFound, "", false},
		{"FailedPrecondition", codes.FailedPrecondition, "", false},
		{"PermissionDenied", codes.PermissionDenied, "", false},
		{"Aborted", codes.Aborted, "", false},
		{"ResourceExhausted SOURCE_TOO_LARGE", codes.ResourceExhausted, "SOURCE_TOO_LARGE", false},
		{"PENDING", codes.OK, "", false},
		{"ResourceExhausted OVERLOADED", codes.ResourceExhausted, "OVERLOADED", true},
		{"ResourceExhausted without a reason", codes.ResourceExhausted, "", true},
		{"Unavailable", codes.Unavailable, "", true},
		{"Internal", codes.Internal, "", true},
		{"Unknown", codes.Unknown, "", true},
		{"DeadlineExceeded", codes.DeadlineExceeded, "", true},
		{"Unauthenticated", codes.Unauthenticated, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &grpcFake{reason: tt.reason}
			fake.code.Store(uint32(tt.code))
			if tt.name == "PENDING" {
				fake.outcome = imgedgev1.Outcome_OUTCOME_PENDING
			}
			a := breakerAdapter(t, fake, BreakerConfig{Failures: 3, OpenMS: 60_000})
			for range 6 {
				if _, d, _ := a.HandleEvent(context.Background(), event); d.Action != Fallback {
					t.Fatalf("%s: %s (%s), want a fallback", tt.name, d.Action, d.Reason)
				}
			}
			_, d, _ := a.HandleEvent(context.Background(), event)
			if opened := d.Reason == "circuit breaker open"; opened != tt.opens {
				t.Errorf("after 7 answers %s: breaker open %v, want %v (%s)", tt.name, opened, tt.opens, d.Reason)
			}
		})
	}
}

// TestTraceparentReachesTheService: a viewer request's W3C traceparent
// continues through the gRPC call, in the same trace.
func TestTraceparentReachesTheService(t *testing.T) {
	fake := &grpcFake{}
	a := realAdapter(t, Service{Address: serveFake(t, fake), Insecure: true}, 2*time.Second)
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	event := bytes.Replace(fixture(t, "s3_plain.json"), []byte(`"headers": {`),
		[]byte(`"headers": {"traceparent": [{"key": "traceparent", "value": "00-`+trace+`-00f067aa0ba902b7-01"}],`), 1)
	if _, d, err := a.HandleEvent(context.Background(), event); err != nil || d.Action != Rewrite {
		t.Fatalf("%v: %s (%s)", err, d.Action, d.Reason)
	}
	got, _ := fake.traceparent.Load().(string)
	if !strings.Contains(got, trace) {
		t.Errorf("the service saw traceparent %q, want trace %s", got, trace)
	}
}

func TestBreakerStopsCallingADeadService(t *testing.T) {
	fake := &grpcFake{}
	fake.code.Store(uint32(codes.Unavailable))
	a := breakerAdapter(t, fake, BreakerConfig{Failures: 4, OpenMS: 200})
	event := fixture(t, "s3_plain.json")
	for range 20 {
		a.HandleEvent(context.Background(), event)
	}
	// The client retries UNAVAILABLE a few times per call; what matters is
	// that calls stop once the breaker has opened.
	seen := fake.calls.Load()
	for range 20 {
		if _, d, _ := a.HandleEvent(context.Background(), event); d.Reason != "circuit breaker open" {
			t.Fatalf("breaker not open: %s", d.Reason)
		}
	}
	if fake.calls.Load() != seen {
		t.Errorf("the service was called while the breaker was open")
	}
	fake.code.Store(uint32(codes.OK))
	waitFor(t, func() bool {
		_, d, _ := a.HandleEvent(context.Background(), event)
		return d.Action == Rewrite
	})
}
