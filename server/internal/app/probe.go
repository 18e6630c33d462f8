package app

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// Probe is `imgedge-server health`: it probes a running server's health service, for container health
// checks: exit status 0 when it is SERVING. It reads the same IMGEDGE_*
// variables as the server, so a container needs no extra settings.
func Probe(ctx context.Context, args []string, lookup func(string) (string, bool)) error {
	fs := flag.NewFlagSet("imgedge-server health", flag.ContinueOnError)
	addr := fs.String("addr", envOr(lookup, "IMGEDGE_GRPC_ADDR", "127.0.0.1:50051"), "server address [IMGEDGE_GRPC_ADDR]")
	useTLS := fs.Bool("tls", envOr(lookup, "IMGEDGE_TLS_CERT", "") != "", "connect with TLS (default: when IMGEDGE_TLS_CERT is set)")
	caFile := fs.String("ca-file", "", "verify the server against this CA (default: system roots)")
	serverName := fs.String("server-name", "", "name expected in the server's certificate")
	timeout := fs.Duration("timeout", 3*time.Second, "deadline of the probe")
	ready := fs.Bool("ready", false, "probe readiness (the store answers, libvips works) instead of liveness")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts, err := client.Transport{Insecure: !*useTLS && *caFile == "", CAFile: *caFile, ServerName: *serverName}.Options()
	if err != nil {
		return err
	}
	c, err := client.New(*addr, append(opts, client.WithDefaultDeadline(*timeout))...)
	if err != nil {
		return err
	}
	defer c.Close()
	service := ""
	if *ready {
		service = imgedgev1.ImageTransformService_ServiceDesc.ServiceName
	}
	if err := c.Health(ctx, service); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	fmt.Fprintln(os.Stdout, "SERVING")
	return nil
}

func envOr(lookup func(string) (string, bool), name, def string) string {
	if v, ok := lookup(name); ok && v != "" {
		return v
	}
	return def
}
