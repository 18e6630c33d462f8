// Command server runs the imgedge gRPC image-transform service.
//
//	go run ./server                      # local store under ./data, on 127.0.0.1:50051
//	go run ./server --store s3           # S3 through the AWS default credential chain
//	go run ./server --help               # every flag and its IMGEDGE_* twin
//	go run ./server --print-config       # the effective configuration, secrets redacted
//	go run ./server health [--addr A]    # probe a running server (container health checks)
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/auth"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/grpcapi"
	"github.com/imgedge/imgedge/server/internal/imaging"
	"github.com/imgedge/imgedge/server/internal/metrics"
	"github.com/imgedge/imgedge/server/internal/store/local"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/tracing"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "health" {
		err = healthMain(ctx, os.Args[2:], os.LookupEnv)
	} else {
		err = realMain(ctx, os.Args[1:], os.Stderr)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(os.Stdout)
			return
		}
		fmt.Fprintln(os.Stderr, "imgedge-server:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, logOut io.Writer) error {
	printConfig := false
	args = filterFlag(args, "--print-config", &printConfig)
	cfg, err := config.Load(args, os.LookupEnv)
	if err != nil {
		return err
	}
	if printConfig {
		out, err := cfg.Redacted()
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	}
	level, _ := config.ParseLevel(cfg.LogLevel)
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		// Uploads and sources live on the Go heap: collect their garbage
		// before the heap outgrows the memory budget, not at twice its size.
		debug.SetMemoryLimit(int64(cfg.MaxMemory))
	}

	stopTracing, err := tracing.Setup(ctx, os.LookupEnv, "imgedge-server")
	if err != nil {
		return err
	}
	defer func() {
		flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(flush); err != nil {
			logger.Warn("flushing traces", slog.String("error", err.Error()))
		}
	}()

	security, err := newSecurity(cfg)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	proc := newProcessor(cfg)
	srv, err := newServer(cfg, st, proc, logger, security)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listen: %w", err)
		}
		msrv := &http.Server{Handler: srv.metrics.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go msrv.Serve(mlis)
		defer msrv.Close()
	}

	// Reload TLS material and tokens on SIGHUP and when their files change.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go auth.Watch(ctx, hup, cfg.ReloadPeriod, func(name string, err error) {
		if err != nil {
			logger.Error("reload failed, keeping the previous one", slog.String("what", name), slog.String("error", err.Error()))
			return
		}
		logger.Info("reloaded", slog.String("what", name))
	}, security.reloaders)

	// Readiness: the store answers and libvips works.
	go srv.watchReadiness(ctx, st, proc, cfg.ReadinessInterval, logger)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.grpc.Serve(lis) }()
	logger.Info("serving", slog.String("addr", lis.Addr().String()), slog.String("store", cfg.Store),
		slog.Bool("tls", security.tls != nil), slog.Bool("client_certs", cfg.ClientCA != ""),
		slog.Int("tokens", security.tokens.Len()), slog.String("metrics", cfg.MetricsAddr),
		slog.String("libvips", imaging.Version()), slog.Int("workers", cfg.Workers), slog.Int("queue", cfg.Queue))

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Stop advertising readiness first, then drain in-flight calls, bounded.
	logger.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	srv.health.Shutdown()
	drained := make(chan struct{})
	go func() { srv.grpc.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		logger.Warn("shutdown timeout: cancelling the remaining calls")
		srv.grpc.Stop()
	}
	logger.Info("stopped")
	return nil
}

// filterFlag removes a boolean flag from args, reporting whether it was there.
func filterFlag(args []string, name string, found *bool) []string {
	out := args[:0:0]
	for _, a := range args {
		if a == name || a == "-"+name[2:] {
			*found = true
			continue
		}
		out = append(out, a)
	}
	return out
}

// security is the transport and authentication setup.
type security struct {
	tls       *auth.TLSFiles
	tokens    *auth.Tokens
	reloaders map[string]auth.Reloader
}

// newSecurity loads TLS and tokens, and refuses an unprotected server on a
// non-loopback address unless --insecure says so.
func newSecurity(cfg config.Config) (*security, error) {
	s := &security{reloaders: map[string]auth.Reloader{}}
	var err error
	if s.tokens, err = auth.NewTokens(cfg.Tokens, cfg.TokensFile); err != nil {
		return nil, err
	}
	if cfg.TokensFile != "" {
		s.reloaders["tokens"] = s.tokens
	}
	if cfg.TLSCert != "" {
		if s.tls, err = auth.NewTLSFiles(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA); err != nil {
			return nil, err
		}
		s.reloaders["tls"] = s.tls
	}
	if !cfg.Loopback() && !cfg.Insecure {
		if s.tls == nil {
			return nil, fmt.Errorf("refusing to serve plaintext on %s: give --tls-cert and --tls-key, or --insecure", cfg.GRPCAddr)
		}
		if s.tokens.Len() == 0 && cfg.ClientCA == "" {
			return nil, fmt.Errorf("refusing to serve %s without authentication: give --tokens-file or --client-ca, or --insecure", cfg.GRPCAddr)
		}
	}
	return s, nil
}

// server is the assembled gRPC server with its health and metrics.
type server struct {
	grpc    *grpc.Server
	health  *health.Server
	metrics *metrics.Metrics
}

// newServer assembles the service, its interceptors (access log outermost,
// then metrics, then authentication, then the call timeout), health and
// reflection.
func newServer(cfg config.Config, st transform.Store, proc transform.Processor, logger *slog.Logger, sec *security, extra ...grpc.ServerOption) (*server, error) {
	pool := workpool.New(workpool.Limits{
		Workers:     cfg.Workers,
		Queue:       cfg.Queue,
		BufferBytes: int64(cfg.MaxMemory) / 4,
		PixelBytes:  int64(cfg.MaxMemory) - int64(cfg.MaxMemory)/4,
	})
	m := metrics.New(pool)
	svc, err := newService(cfg, st, proc, pool, m)
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
	return &server{grpc: gs, health: healthSrv, metrics: m}, nil
}

// selfTester proves the image processor works.
type selfTester interface{ SelfTest() error }

// pinger proves the store answers.
type pinger interface{ Ping(context.Context) error }

// watchReadiness sets the service's health (readiness, the name
// imgedge.v1.ImageTransformService) to SERVING while the store answers and
// libvips works, NOT_SERVING otherwise, re-checking every interval until ctx
// ends. The server's overall health ("", liveness) stays SERVING until
// shutdown: a store outage makes replicas unready, never restarts them.
func (s *server) watchReadiness(ctx context.Context, st pinger, proc selfTester, interval time.Duration, logger *slog.Logger) {
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
			s.health.SetServingStatus(imgedgev1.ImageTransformService_ServiceDesc.ServiceName, next)
			serving = next
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// serviceStore is what the server needs of an object store: the service's
// interface plus a readiness probe.
type serviceStore interface {
	transform.Store
	Ping(ctx context.Context) error
}

func openStore(ctx context.Context, cfg config.Config) (serviceStore, error) {
	kind, dir, err := cfg.StoreKind()
	if err != nil {
		return nil, err
	}
	if kind == "file" {
		return local.Open(dir)
	}
	// S3-compatible servers behind a custom endpoint (often an IP address)
	// need path-style addressing: it is on whenever an endpoint is given.
	return s3store.New(ctx, s3store.Config{
		Region: cfg.S3Region, Endpoint: cfg.S3Endpoint, PathStyle: cfg.S3PathStyle || cfg.S3Endpoint != "",
		ReadinessBuckets: cfg.Buckets,
	})
}

// newProcessor is the libvips processor cfg describes.
func newProcessor(cfg config.Config) *imaging.Processor {
	ic := imaging.Config{AVIFSpeed: cfg.AVIFSpeed, KeepMetadata: cfg.KeepMetadata}
	if cfg.MozJPEG {
		ic.JPEG = imaging.MozJPEG
	}
	return imaging.New(ic)
}

func newService(cfg config.Config, st transform.Store, proc transform.Processor, pool *workpool.Pool, obs transform.Observer) (*transform.Service, error) {
	presets, err := cfg.PresetSpecs()
	if err != nil {
		return nil, err
	}
	return transform.New(transform.Config{
		Prefix:        cfg.Prefix,
		Presets:       presets,
		DefaultPreset: cfg.DefaultPreset,
		Defaults: variant.Defaults{
			Quality: map[variant.Format]int{
				variant.FormatJPEG: cfg.JPEGQuality,
				variant.FormatWebP: cfg.WebPQuality,
				variant.FormatAVIF: cfg.AVIFQuality,
			},
			Negotiation: variant.Negotiation{AVIF: cfg.AutoAVIF, WebP: cfg.AutoWebP, Fallback: variant.FormatJPEG},
		},
		MinSaving:      cfg.MinSaving,
		AllowedBuckets: cfg.Buckets,
		Limits: transform.Limits{
			MaxSourceBytes:  int64(cfg.MaxSourceBytes),
			MaxStreamBytes:  int64(cmp.Or(cfg.MaxStreamBytes, cfg.MaxSourceBytes)),
			MaxSourcePixels: cfg.MaxSourcePixels,
			MaxWidth:        cfg.MaxWidth,
			MaxHeight:       cfg.MaxHeight,
		},
		ProcessTimeout: cfg.ProcessTimeout,
		Observer:       obs,
		Auto:           autoQuality(cfg.AutoQuality),

		VariantCacheControl: cfg.CacheControl,
	}, st, proc, pool)
}

func autoQuality(a config.AutoQuality) transform.AutoQuality {
	targets := map[variant.Format]float64{}
	for name, t := range a.Targets {
		if f, err := variant.ParseFormat(name); err == nil {
			targets[f] = t
		}
	}
	return transform.AutoQuality{
		Targets: targets, MinQuality: a.MinQuality, MaxQuality: a.MaxQuality,
		Steps: a.Steps, SkipJPEGAtOrBelow: a.SkipJPEGAtOrBelow,
	}
}
