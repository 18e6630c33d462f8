// Command server runs the imgedge gRPC image-transform service.
//
//	go run ./server                      # local store under ./data, on 127.0.0.1:50051
//	go run ./server --store s3           # S3 through the AWS default credential chain
//	go run ./server --help               # every flag and its IMGEDGE_* twin
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/grpcapi"
	"github.com/imgedge/imgedge/server/internal/imaging"
	"github.com/imgedge/imgedge/server/internal/store/local"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(os.Stdout)
			return
		}
		fmt.Fprintln(os.Stderr, "imgedge-server:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string) error {
	cfg, err := config.Load(args, os.LookupEnv)
	if err != nil {
		return err
	}
	level, _ := config.ParseLevel(cfg.LogLevel)
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	if err := st.Ping(ctx); err != nil {
		return fmt.Errorf("store %s: %w", cfg.Store, err)
	}
	proc := imaging.New(imaging.Config{AVIFSpeed: cfg.AVIFSpeed, KeepMetadata: cfg.KeepMetadata})
	gs, healthSrv, err := newGRPCServer(cfg, st, proc, logger)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	logger.Info("serving", slog.String("addr", lis.Addr().String()), slog.String("store", cfg.Store),
		slog.String("libvips", imaging.Version()), slog.Int("workers", cfg.Workers), slog.Int("queue", cfg.Queue))

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Stop advertising readiness first, then drain in-flight calls, bounded.
	logger.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	healthSrv.Shutdown()
	drained := make(chan struct{})
	go func() { gs.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		logger.Warn("shutdown timeout: cancelling the remaining calls")
		gs.Stop()
	}
	return nil
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
	return s3store.New(ctx, s3store.Config{Region: cfg.S3Region, Endpoint: cfg.S3Endpoint, PathStyle: cfg.S3PathStyle})
}

// newGRPCServer assembles the service and its gRPC server, with health and
// reflection registered.
func newGRPCServer(cfg config.Config, st transform.Store, proc transform.Processor, logger *slog.Logger, extra ...grpc.ServerOption) (*grpc.Server, *health.Server, error) {
	svc, err := newService(cfg, st, proc)
	if err != nil {
		return nil, nil, err
	}
	gs := grpc.NewServer(append(grpcapi.Interceptors(logger), extra...)...)
	imgedgev1.RegisterImageTransformServiceServer(gs, grpcapi.NewServer(svc, grpcapi.Options{
		MaxStreamBytes: int64(cfg.MaxStreamBytes),
		Logger:         logger,
	}))
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(gs, healthSrv)
	reflection.Register(gs)
	return gs, healthSrv, nil
}

func newService(cfg config.Config, st transform.Store, proc transform.Processor) (*transform.Service, error) {
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
			MaxSourcePixels: cfg.MaxSourcePixels,
			MaxWidth:        cfg.MaxWidth,
			MaxHeight:       cfg.MaxHeight,
		},
		ProcessTimeout: cfg.ProcessTimeout,
	}, st, proc, workpool.New(cfg.Workers, cfg.Queue))
}
