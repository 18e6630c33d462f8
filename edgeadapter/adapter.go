// Package edgeadapter is the CloudFront origin-request adapter: it decides
// whether a request is an image it handles, asks the imgedge service for the
// variant (EnsureVariant), and rewrites the request URI to the stored
// variant's key — or leaves the request exactly as it came on any error,
// timeout, breaker-open or "the original is smaller". It is pure Go: it
// runs as a process beside the Node.js launcher on Lambda@Edge, or behind
// the plain HTTP mode that simulates the edge locally.
package edgeadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imgedge/imgedge/client"
	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/edgeadapter/cloudfront"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// Action is what the adapter did with a request.
type Action string

// Actions.
const (
	Rewrite     Action = "rewrite"      // uri now points at the stored variant
	PassThrough Action = "pass-through" // not handled: no call was made
	Fallback    Action = "fallback"     // handled, but the original is served (error, timeout, breaker, original smaller)
)

// Decision explains one event's outcome.
type Decision struct {
	Action Action
	Reason string
	Bucket string
	Key    string
	URI    string // the forwarded request's URI
}

// Ensurer is what the adapter needs from the service.
type Ensurer interface {
	EnsureVariant(ctx context.Context, req *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error)
}

// Adapter handles CloudFront origin-request events.
type Adapter struct {
	cfg     Config
	log     *slog.Logger
	dial    func(Service) (Ensurer, error)
	mu      sync.Mutex
	clients map[Service]Ensurer
	breaker *gobreaker.CircuitBreaker[*imgedgev1.EnsureVariantResponse]
}

// New returns an adapter. The service is dialled lazily, per distinct
// service settings (origin headers may point elsewhere).
func New(cfg Config, logger *slog.Logger) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Adapter{cfg: cfg, log: logger, dial: dialService, clients: map[Service]Ensurer{}}
	a.breaker = gobreaker.NewCircuitBreaker[*imgedgev1.EnsureVariantResponse](gobreaker.Settings{
		Name:        "imgedge",
		MaxRequests: 1, // one trial call when half-open
		Timeout:     time.Duration(cfg.Breaker.OpenMS) * time.Millisecond,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.Breaker.Failures)
		},
		IsSuccessful: serviceHealthy,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			logger.Warn("circuit breaker", slog.String("from", from.String()), slog.String("to", to.String()))
		},
	})
	return a, nil
}

// serviceHealthy tells the breaker whether an answer says the service is
// unwell. Only those count: no answer in time, unreachable, Unavailable,
// Internal or Unknown, a refused token, and overload as the service reports
// it. Answers about the request itself (too large, not found, invalid, not
// allowed, a lost write race, PENDING) never do: otherwise any viewer could
// open the breaker for everyone by asking for a bad image five times.
func serviceHealthy(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied,
		codes.OutOfRange, codes.AlreadyExists, codes.Aborted, codes.Canceled:
		return true
	case codes.ResourceExhausted:
		return errors.Is(err, client.ErrTooLarge)
	}
	return false
}

func dialService(s Service) (Ensurer, error) {
	// The viewer's W3C traceparent, if any, goes on to the service in the
	// gRPC metadata, so one trace spans edge → service → S3.
	opts, err := s.transport().Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, client.WithDefaultDeadline(10*time.Second), client.WithDialOptions(
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithPropagators(propagation.TraceContext{})))))
	return client.New(s.Address, opts...)
}

func (a *Adapter) client(s Service) (Ensurer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[s]; ok {
		return c, nil
	}
	c, err := a.dial(s)
	if err != nil {
		return nil, err
	}
	a.clients[s] = c
	return c, nil
}

// HandleEvent handles one raw CloudFront event and returns the request to
// forward as JSON: the input request with only its uri changed, or exactly
// the input request. It never fails for an event that holds a request.
func (a *Adapter) HandleEvent(ctx context.Context, event []byte) ([]byte, Decision, error) {
	ev, err := cloudfront.ParseEvent(event)
	if err != nil {
		return nil, Decision{}, err
	}
	req := &ev.Records[0].CF.Request
	d := a.decide(ctx, req)
	if d.Action != Rewrite {
		return req.Raw, d, nil
	}
	out, err := req.WithURI(d.URI)
	if err != nil {
		return req.Raw, Decision{Action: Fallback, Reason: err.Error(), URI: req.URI}, nil //nolint:nilerr // the error is the fallback's reason
	}
	return out, d, nil
}

// decide works out what to do with a request.
func (a *Adapter) decide(ctx context.Context, req *cloudfront.Request) Decision {
	keep := func(act Action, reason string) Decision {
		return Decision{Action: act, Reason: reason, URI: req.URI}
	}
	if req.Method != "GET" && req.Method != "HEAD" {
		return keep(PassThrough, "method "+req.Method)
	}
	domain := ""
	cfg := a.cfg
	bucket := ""
	if req.Origin != nil && req.Origin.S3 != nil {
		s3 := req.Origin.S3
		domain = s3.DomainName
		cfg, bucket = cfg.withOrigin(s3.CustomHeaders)
		if s3.Path != "" {
			return keep(PassThrough, "origin path "+s3.Path+" is not supported")
		}
	} else if req.Origin != nil && req.Origin.Custom != nil {
		domain = req.Origin.Custom.DomainName
	}
	if bucket == "" {
		bucket = cfg.bucketFor(domain)
	}
	if bucket == "" {
		return keep(PassThrough, fmt.Sprintf("no bucket for origin %q", domain))
	}
	key, err := KeyFromURI(req.URI)
	if err != nil {
		return keep(PassThrough, err.Error())
	}
	if err := cfg.handles(req.URI, key); err != nil {
		return keep(PassThrough, err.Error())
	}
	wanted, err := cfg.variantFromQuery(req.QueryString)
	if err != nil {
		return keep(PassThrough, err.Error())
	}
	wanted.Viewer = viewerClass(req.Headers)
	ereq := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: key, Variant: wanted.Proto(), MaxWait: durationpb.New(cfg.MaxWait())}

	c, err := a.client(cfg.Service)
	if err != nil {
		return keep(Fallback, "dialling the service: "+err.Error())
	}
	ctx = propagation.TraceContext{}.Extract(ctx, headerCarrier(req.Headers))
	callCtx, cancel := context.WithTimeout(ctx, cfg.Deadline())
	defer cancel()
	resp, err := a.breaker.Execute(func() (*imgedgev1.EnsureVariantResponse, error) {
		return c.EnsureVariant(callCtx, ereq)
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return Decision{Action: Fallback, Reason: "circuit breaker open", Bucket: bucket, Key: key, URI: req.URI}
	case err != nil:
		return Decision{Action: Fallback, Reason: "service: " + err.Error(), Bucket: bucket, Key: key, URI: req.URI}
	}
	switch resp.GetOutcome() {
	case imgedgev1.Outcome_OUTCOME_CREATED, imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED:
	case imgedgev1.Outcome_OUTCOME_PENDING:
		// The variant is on its way; CloudFront caches this fallback only
		// for the short default TTL, so a later request gets the variant.
		return Decision{Action: Fallback, Reason: "pending: the variant is being built", Bucket: bucket, Key: key, URI: req.URI}
	default:
		return Decision{Action: Fallback, Reason: "outcome " + resp.GetOutcome().String(), Bucket: bucket, Key: key, URI: req.URI}
	}
	if !strings.HasPrefix(resp.GetKey(), cfg.ProcessedPrefix) || variant.ValidateKey(resp.GetKey()) != nil {
		return Decision{Action: Fallback, Reason: fmt.Sprintf("the service named an unexpected key %q", resp.GetKey()), Bucket: bucket, Key: key, URI: req.URI}
	}
	return Decision{Action: Rewrite, Reason: resp.GetOutcome().String(), Bucket: bucket, Key: resp.GetKey(), URI: URIFromKey(resp.GetKey())}
}

// headerCarrier reads W3C trace context from CloudFront's headers.
type headerCarrier cloudfront.Headers

func (h headerCarrier) Get(key string) string { return cloudfront.Headers(h).Get(key) }
func (h headerCarrier) Set(string, string)    {}
func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// LogDecision writes one structured line for a decision; fallbacks at warn level.
func LogDecision(logger *slog.Logger, d Decision) {
	level := slog.LevelInfo
	if d.Action == Fallback {
		level = slog.LevelWarn
	}
	logger.Log(context.Background(), level, "edge", slog.String("action", string(d.Action)),
		slog.String("reason", d.Reason), slog.String("bucket", d.Bucket), slog.String("key", d.Key), slog.String("uri", d.URI))
}
