// Command imgedge-edge runs the edge adapter.
//
// Launcher mode (the default), as the Node.js launcher runs it on
// Lambda@Edge: one CloudFront event (JSON) per line on stdin, one result per
// line on stdout, in order. A result is the request to forward: the event's
// request with only its uri changed, or unchanged. Decisions are logged as
// JSON on stderr.
//
//	imgedge-edge --config config.json
//
// HTTP mode simulates the edge locally: a GET for /photos/a.jpg runs the
// adapter on a synthetic origin-request event, then does what CloudFront
// would do next — fetches the forwarded URI from the S3 origin — and returns
// those bytes. The forwarded URI is in the X-Imgedge-Uri response header.
//
//	imgedge-edge --config config.json --http 127.0.0.1:8080 --bucket demo \
//	    --origin s3 --s3-endpoint http://127.0.0.1:7070
package main

import (
	"bufio"
	"bytes"
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
	if err := realMain(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "imgedge-edge:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imgedge-edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "config.json", "adapter configuration `file` (JSON)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	httpAddr := fs.String("http", "", "serve the HTTP edge simulation on this `address` instead of the launcher protocol")
	var origin originFlags
	fs.StringVar(&origin.bucket, "bucket", "", "HTTP mode: the bucket behind the simulated S3 origin")
	fs.StringVar(&origin.store, "origin", "s3", "HTTP mode: where to fetch forwarded URIs: s3 or file:DIR")
	fs.StringVar(&origin.endpoint, "s3-endpoint", "", "HTTP mode: S3-compatible endpoint URL")
	fs.StringVar(&origin.region, "s3-region", "us-east-1", "HTTP mode: S3 region")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := edgeadapter.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stderr, "%s: ok\n", *configFile)
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	adapter, err := edgeadapter.New(cfg, logger)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		return serveHTTP(ctx, *httpAddr, adapter, origin, logger)
	}
	return serveLines(ctx, adapter, cfg, stdin, stdout, logger)
}

// serveLines speaks the launcher protocol: one event per line in, one
// request per line out, in order. It returns when stdin closes or ctx ends.
func serveLines(ctx context.Context, a *edgeadapter.Adapter, cfg edgeadapter.Config, in io.Reader, out io.Writer, logger *slog.Logger) error {
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20) // events with a body can reach ~1.4 MB
		for sc.Scan() {
			select {
			case lines <- bytes.Clone(sc.Bytes()):
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	w := bufio.NewWriter(out)
	budget := time.Duration(cfg.LauncherDeadlineMS) * time.Millisecond
	for {
		var line []byte
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if err != nil {
				return fmt.Errorf("reading events: %w", err)
			}
			return nil
		case line = <-lines:
		}
		evCtx, cancel := context.WithTimeout(ctx, budget)
		result, d, err := a.HandleEvent(evCtx, line)
		cancel()
		if err != nil {
			// No request to hand back: the launcher then keeps its own copy.
			logger.Error("bad event", slog.String("error", err.Error()))
			result = []byte("null")
		} else {
			edgeadapter.LogDecision(logger, d)
		}
		w.Write(result)
		w.WriteByte('\n')
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing a result: %w", err)
		}
	}
}

// serveHTTP runs the local edge simulation until ctx ends.
func serveHTTP(ctx context.Context, addr string, a *edgeadapter.Adapter, o originFlags, logger *slog.Logger) error {
	if o.bucket == "" {
		return errors.New("--bucket is required in HTTP mode")
	}
	origin, err := httpedge.OpenOrigin(ctx, o.store, o.endpoint, o.region)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           &httpedge.Handler{Adapter: a, Bucket: o.bucket, Origin: origin, Log: logger},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("edge simulation listening", slog.String("addr", addr), slog.String("bucket", o.bucket))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// originFlags configure where HTTP mode fetches forwarded URIs from.
type originFlags struct {
	bucket, store, endpoint, region string
}
