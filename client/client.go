// Package client is the Go client of the imgedge image-transform service.
// It is pure Go (it builds with CGO_ENABLED=0) and never imports server code.
//
// A Client wraps one gRPC connection with what callers would otherwise
// rebuild each time: TLS and bearer-token credentials, a default per-call
// deadline, a service config that retries only UNAVAILABLE with backoff and
// balances round_robin across every address a dns:/// target resolves to
// (a headless Kubernetes service), streaming of image bytes in chunks both
// ways, and errors that callers test with errors.Is.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// DefaultServiceConfig retries only UNAVAILABLE, with exponential backoff,
// and balances round_robin over all resolved addresses.
const DefaultServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "imgedge.v1.ImageTransformService"}, {"service": "grpc.health.v1.Health"}],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.05s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// DefaultChunkSize is the size of the image chunks Transform sends.
const DefaultChunkSize = 256 << 10

// Client is a connection to the imgedge service. It is safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn
	rpc      imgedgev1.ImageTransformServiceClient
	health   healthpb.HealthClient
	deadline time.Duration
	chunk    int
}

type options struct {
	tls      *tls.Config
	insecure bool
	token    string
	deadline time.Duration
	chunk    int
	dialOpts []grpc.DialOption
	errs     []error
}

// Option configures a Client.
type Option func(*options)

// WithTLS uses TLS with the given configuration.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg.Clone() } }

// WithSystemTLS uses TLS verified against the system's root certificates.
func WithSystemTLS() Option {
	return func(o *options) { o.tls = &tls.Config{MinVersion: tls.VersionTLS12} }
}

// WithCAFile uses TLS verified against the PEM certificates in path.
func WithCAFile(path string) Option {
	return func(o *options) {
		pem, err := os.ReadFile(path)
		if err != nil {
			o.errs = append(o.errs, fmt.Errorf("CA file: %w", err))
			return
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			o.errs = append(o.errs, fmt.Errorf("CA file %s holds no PEM certificate", path))
			return
		}
		o.ensureTLS().RootCAs = pool
	}
}

// WithClientCertificate presents a client certificate (mutual TLS).
func WithClientCertificate(certFile, keyFile string) Option {
	return func(o *options) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			o.errs = append(o.errs, fmt.Errorf("client certificate: %w", err))
			return
		}
		o.ensureTLS().Certificates = []tls.Certificate{cert}
	}
}

// WithServerName overrides the name the server's certificate is checked against.
func WithServerName(name string) Option {
	return func(o *options) { o.ensureTLS().ServerName = name }
}

// WithInsecure uses plaintext. Only for loopback and tests: a bearer token
// then travels in the clear.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithToken sends "authorization: Bearer <token>" with every call.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithDefaultDeadline bounds every call whose context has no deadline.
func WithDefaultDeadline(d time.Duration) Option { return func(o *options) { o.deadline = d } }

// WithChunkSize sets the size of the chunks Transform sends.
func WithChunkSize(n int) Option { return func(o *options) { o.chunk = n } }

// WithDialOptions adds raw gRPC dial options (they come last and win).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

func (o *options) ensureTLS() *tls.Config {
	if o.tls == nil {
		o.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o.tls
}

// New creates a client for target, for example "127.0.0.1:50051" or
// "dns:///imgedge-headless.media.svc.cluster.local:50051". It does not
// connect until the first call. Without WithTLS, WithSystemTLS, WithCAFile
// or WithInsecure, it uses TLS with the system roots.
func New(target string, opts ...Option) (*Client, error) {
	o := options{deadline: 30 * time.Second, chunk: DefaultChunkSize}
	for _, opt := range opts {
		opt(&o)
	}
	if err := errors.Join(o.errs...); err != nil {
		return nil, fmt.Errorf("imgedge client: %w", err)
	}
	if o.tls != nil && o.insecure {
		return nil, errors.New("imgedge client: both TLS and insecure requested")
	}
	creds := insecure.NewCredentials()
	if !o.insecure {
		creds = credentials.NewTLS(o.ensureTLS())
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(DefaultServiceConfig),
		grpc.WithChainUnaryInterceptor(deadlineUnary(o.deadline)),
		grpc.WithChainStreamInterceptor(deadlineStream(o.deadline)),
	}
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: !o.insecure}))
	}
	conn, err := grpc.NewClient(target, append(dial, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("imgedge client: %w", err)
	}
	return &Client{
		conn:     conn,
		rpc:      imgedgev1.NewImageTransformServiceClient(conn),
		health:   healthpb.NewHealthClient(conn),
		deadline: o.deadline,
		chunk:    max(o.chunk, 1),
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection, for generated stubs of other services.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// EnsureVariant asks the service to make sure a variant is stored and says
// which key to serve.
func (c *Client) EnsureVariant(ctx context.Context, req *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error) {
	resp, err := c.rpc.EnsureVariant(ctx, req)
	if err != nil {
		return nil, wrap(err)
	}
	return resp, nil
}

// Transform streams the image read from r through the service and writes
// the result to w, chunk by chunk in both directions. It returns the
// result's description once all of it has been written.
func (c *Client) Transform(ctx context.Context, spec *imgedgev1.VariantSpec, r io.Reader, w io.Writer) (*imgedgev1.TransformResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Transform(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	if err := stream.Send(&imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Variant{Variant: spec}}); err != nil {
		return nil, c.streamErr(stream, err)
	}
	buf := make([]byte, c.chunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&imgedgev1.TransformRequest{Part: &imgedgev1.TransformRequest_Chunk{Chunk: bytes.Clone(buf[:n])}}); err != nil {
				return nil, c.streamErr(stream, err)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("imgedge client: reading the image: %w", rerr)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, c.streamErr(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, wrap(err)
	}
	result := first.GetResult()
	if result == nil {
		return nil, errors.New("imgedge client: the service sent a chunk before the result")
	}
	var written int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, wrap(err)
		}
		n, err := w.Write(msg.GetChunk())
		written += int64(n)
		if err != nil {
			return nil, fmt.Errorf("imgedge client: writing the result: %w", err)
		}
	}
	if written != result.GetSize() {
		return nil, fmt.Errorf("imgedge client: received %d bytes, the service announced %d", written, result.GetSize())
	}
	return result, nil
}

// Backfill runs a backfill on the service, calling progress for each object
// as the service reports it, and returns the final summary. Cancelling ctx
// stops the backfill on the service. Backfills are long: the default
// deadline does not apply to them, only ctx's.
func (c *Client) Backfill(ctx context.Context, req *imgedgev1.BackfillRequest, progress func(*imgedgev1.BackfillProgress)) (*imgedgev1.BackfillSummary, error) {
	ctx, cancel := context.WithCancel(withoutDefaultDeadline(ctx))
	defer cancel()
	stream, err := c.rpc.Backfill(ctx, req)
	if err != nil {
		return nil, wrap(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("imgedge client: the backfill ended without a summary")
			}
			return nil, wrap(err)
		}
		if p := msg.GetProgress(); p != nil && progress != nil {
			progress(p)
		}
		if s := msg.GetSummary(); s != nil {
			return s, nil
		}
	}
}

// streamErr returns the real status after a failed Send: gRPC reports the
// server's error on Recv, and io.EOF on Send.
func (c *Client) streamErr(stream imgedgev1.ImageTransformService_TransformClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			return wrap(rerr)
		}
	}
	return wrap(err)
}

// Health checks the service's health; it returns nil when it is SERVING.
// An empty service name asks about the server as a whole.
func (c *Client) Health(ctx context.Context, service string) error {
	resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return wrap(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return &Error{status: status.New(codes.Unavailable, "health is "+resp.GetStatus().String())}
	}
	return nil
}

func deadlineUnary(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

type noDefaultDeadlineKey struct{}

// withoutDefaultDeadline marks a context whose calls may run unbounded.
func withoutDefaultDeadline(ctx context.Context) context.Context {
	return context.WithValue(ctx, noDefaultDeadlineKey{}, true)
}

func deadlineStream(d time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if _, ok := ctx.Deadline(); !ok && d > 0 && ctx.Value(noDefaultDeadlineKey{}) == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			// The stream's context ends the timer when the call ends.
			go func() { <-ctx.Done(); cancel() }()
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// bearer sends a bearer token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }
