package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/auth"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/grpcapi"
	"github.com/imgedge/imgedge/server/internal/metrics"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// Server is the assembled gRPC server with its health and metrics.
type Server struct {
	GRPC    *grpc.Server
	Health  *health.Server
	Metrics *metrics.Metrics
	pool    *workpool.Pool
}

// PoolLimits are the worker pool's limits for cfg: its workers and queue,
// and --max-memory split a quarter for compressed bytes, the rest for
// decoded pixels.
func PoolLimits(cfg config.Config) workpool.Limits {
	return workpool.Limits{
		Workers:     cfg.Workers,
		Queue:       cfg.Queue,
		BufferBytes: int64(cfg.MaxMemory) / 4,
		PixelBytes:  int64(cfg.MaxMemory) - int64(cfg.MaxMemory)/4,
	}
}

// New assembles the service, its interceptors (access log outermost,
// then metrics, then authentication, then the call timeout), health and
// reflection. A nil sec serves plaintext without tokens (tests on loopback).
func New(cfg config.Config, st transform.Store, proc transform.Processor, logger *slog.Logger, sec *Security, extra ...grpc.ServerOption) (*Server, error) {
	if sec == nil {
		sec = &Security{} // plaintext, no tokens: tests on loopback
	}
	pool := workpool.New(PoolLimits(cfg))
	m := metrics.New(pool)
	svc, err := NewService(cfg, st, proc, pool, m)
	if err != nil {
		return nil, err
	}
	guard := &auth.Guard{
		Tokens:      sec.tokens,
		ClientCerts: cfg.ClientCA != "",
		OnIdentity: func(ctx context.Context, name string) {
			grpcapi.AddLogAttrs(ctx, slog.String("caller", name))
		},
	}
	// Tracing continues the caller's W3C trace context (the edge's) from
	// the gRPC metadata; spans go nowhere unless OTEL_* configures them.
	opts := append([]grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler())}, grpcapi.Interceptors(logger)...)
	opts = append(opts, m.ServerOptions()...)
	if guard.Enabled() {
		opts = append(opts, guard.ServerOptions()...)
	}
	opts = append(opts, grpcapi.CallTimeout(cfg.CallTimeout)...)
	opts = append(opts,
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
			Time:                  2 * time.Minute,
			Timeout:               20 * time.Second,
		}),
		// Chunks are 256 KiB to 1 MiB; a little headroom over that.
		grpc.MaxRecvMsgSize(4<<20),
	)
	if sec.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(sec.tls.Config())))
	}
	gs := grpc.NewServer(append(opts, extra...)...)
	imgedgev1.RegisterImageTransformServiceServer(gs, grpcapi.NewServer(svc, grpcapi.Options{
		Logger: logger,
	}))
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(gs, healthSrv)
	if err := grpcapi.RegisterReflection(gs); err != nil {
		return nil, err
	}
	return &Server{GRPC: gs, Health: healthSrv, Metrics: m, pool: pool}, nil
}

// selfTester proves the image processor works.
type selfTester interface{ SelfTest() error }

// pinger proves the store answers.
type pinger interface{ Ping(context.Context) error }

// WatchReadiness sets the service's health (readiness, the name
// imgedge.v1.ImageTransformService) to SERVING while the store answers and
// libvips works, NOT_SERVING otherwise, re-checking every interval until ctx
// ends. The server's overall health ("", liveness) stays SERVING until
// shutdown: a store outage makes replicas unready, never restarts them.
func (s *Server) WatchReadiness(ctx context.Context, st pinger, proc selfTester, interval time.Duration, logger *slog.Logger) {
	serving := healthpb.HealthCheckResponse_UNKNOWN
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		errs := []error{st.Ping(pctx), proc.SelfTest()}
		cancel()
		next := healthpb.HealthCheckResponse_SERVING
		if err := errors.Join(errs...); err != nil {
			next = healthpb.HealthCheckResponse_NOT_SERVING
			if ctx.Err() == nil {
				logger.Error("not ready", slog.String("error", err.Error()))
			}
		}
		if ctx.Err() != nil {
			return
		}
		if next != serving {
			s.Health.SetServingStatus(imgedgev1.ImageTransformService_ServiceDesc.ServiceName, next)
			serving = next
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
