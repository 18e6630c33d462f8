// Package app is the imgedge server's composition root: it turns a
// configuration into a running gRPC server (store, libvips processor, work
// pool, domain service, interceptors, health, reflection, metrics), owns the
// security policy (no plaintext or unauthenticated service off loopback)
// and the readiness loop, and runs it until its context ends. Package main
// only parses the command line into a call to Run or Probe, so tests start
// exactly what production runs, in-process.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/imgedge/imgedge/server/internal/auth"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/imaging"
	"github.com/imgedge/imgedge/server/internal/tracing"
)

// Run loads the configuration from args and the IMGEDGE_* environment, then
// serves until ctx ends, draining in-flight calls. Logs go to logOut as
// JSON. With --print-config it prints the effective configuration instead.
func Run(ctx context.Context, args []string, logOut io.Writer) error {
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
	TuneGC(cfg, os.LookupEnv)

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

	security, err := NewSecurity(cfg)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	proc := NewProcessor(cfg)
	srv, err := New(cfg, st, proc, logger, security)
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
		msrv := &http.Server{Handler: srv.Metrics.Handler(), ReadHeaderTimeout: 5 * time.Second}
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
	go srv.WatchReadiness(ctx, st, proc, cfg.ReadinessInterval, logger)
	go srv.FreeMemoryWhenIdle(ctx, cfg.FreeMemoryAfter, logger)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.GRPC.Serve(lis) }()
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
	srv.Health.Shutdown()
	drained := make(chan struct{})
	go func() { srv.GRPC.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		logger.Warn("shutdown timeout: cancelling the remaining calls")
		srv.GRPC.Stop()
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
