// Command imgedge-edge-sim simulates the edge locally: a GET for
// /photos/a.jpg runs the adapter on a synthetic origin-request event, then
// does what CloudFront would do next — fetches the forwarded URI from the
// origin — and returns those bytes. The forwarded URI is in the
// X-Imgedge-Uri response header, the adapter's action in X-Imgedge-Action.
//
//	imgedge-edge-sim --config deploy/dev/edge-local.json --listen 127.0.0.1:8080 \
//	    --bucket demo --origin file:./data
//	imgedge-edge-sim --config edge.json --bucket demo --origin s3 --s3-endpoint http://127.0.0.1:7070
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/imgedge/imgedge/edgeadapter"
	"github.com/imgedge/imgedge/edgeadapter/httpedge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "imgedge-edge-sim:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("imgedge-edge-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "deploy/dev/edge-local.json", "adapter configuration `file` (JSON)")
	addr := fs.String("listen", "127.0.0.1:8080", "serve the simulation on this `address`")
	bucket := fs.String("bucket", "", "the bucket behind the simulated S3 origin (required)")
	store := fs.String("origin", "s3", "where to fetch forwarded URIs: s3 or file:DIR")
	endpoint := fs.String("s3-endpoint", "", "S3-compatible endpoint URL")
	region := fs.String("s3-region", "us-east-1", "S3 region")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *bucket == "" {
		return errors.New("--bucket is required")
	}
	cfg, err := edgeadapter.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	adapter, err := edgeadapter.New(cfg, logger)
	if err != nil {
		return err
	}
	origin, err := httpedge.OpenOrigin(ctx, *store, *endpoint, *region)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              *addr,
		Handler:           &httpedge.Handler{Adapter: adapter, Bucket: *bucket, Origin: origin, Log: logger},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("edge simulation listening", slog.String("addr", *addr), slog.String("bucket", *bucket))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
