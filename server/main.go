// Command server runs the imgedge gRPC image-transform service.
//
//	go run ./server                      # local store under ./data, on 127.0.0.1:50051
//	go run ./server --store s3           # S3 through the AWS default credential chain
//	go run ./server --help               # every flag and its IMGEDGE_* twin
//	go run ./server --print-config       # the effective configuration, secrets redacted
//	go run ./server health [--addr A]    # probe a running server (container health checks)
//
// The wiring lives in server/internal/app, where tests start it in-process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "health" {
		err = app.Probe(ctx, os.Args[2:], os.LookupEnv)
	} else {
		err = app.Run(ctx, os.Args[1:], os.Stderr)
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
