// Command imgedge-edge runs the edge adapter as the Node.js launcher runs it
// on Lambda@Edge: one CloudFront event (JSON) per line on stdin, one result
// per line on stdout, in order. A result is the request to forward: the
// event's request with only its uri changed, or unchanged. Decisions are
// logged as JSON on stderr. It links no AWS SDK (the local edge simulation
// is imgedge-edge-sim), so the Lambda package stays small and starts fast.
//
//	imgedge-edge --config config.json
//	imgedge-edge --config config.json --check   # validate and exit
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/imgedge/imgedge/edgeadapter"
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
	check := fs.Bool("check", false, "validate the configuration for deployment (no placeholders left) and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg, err := edgeadapter.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	if *check {
		if err := cfg.Deployable(); err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
		fmt.Fprintf(stderr, "%s: ok\n", *configFile)
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	adapter, err := edgeadapter.New(cfg, logger)
	if err != nil {
		return err
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
		_, _ = w.Write(result) // a bufio.Writer keeps its first error for Flush
		_ = w.WriteByte('\n')
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing a result: %w", err)
		}
	}
}
