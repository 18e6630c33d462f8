// Command imgedge is the command-line client of the imgedge service, for
// people and batch jobs.
//
//	imgedge transform [flags] IN OUT      transform a local file through the service
//	imgedge ensure    [flags] BUCKET KEY  ensure a stored variant, print the outcome
//	imgedge backfill  [flags] BUCKET [PREFIX]
//	                                      ensure a variant for every original under a prefix
//	imgedge health    [flags]             check the service's health
//
// Connection flags, on every subcommand, with their environment twins:
// --addr (IMGEDGE_ADDR), --token (IMGEDGE_TOKEN), --ca-file
// (IMGEDGE_CA_FILE), --cert and --key (IMGEDGE_CLIENT_CERT,
// IMGEDGE_CLIENT_KEY), --server-name (IMGEDGE_SERVER_NAME), --insecure
// (IMGEDGE_INSECURE), --timeout (IMGEDGE_TIMEOUT). Flags win.
//
// Exit codes: 0 success; 1 other failure; 2 usage error; 3 backfill done
// with per-object errors; 4 not found; 5 invalid request; 6 unauthenticated
// or permission denied; 7 unavailable, overloaded or timed out (retry later).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitPartial     = 3
	exitNotFound    = 4
	exitInvalid     = 5
	exitAuth        = 6
	exitUnavailable = 7
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// env is how the command reads its environment (a parameter, for tests).
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, e env, args []string) error
}

var commands = []command{
	{"transform", "IN OUT", "transform a local file through the service (- for stdin/stdout)", runTransform},
	{"ensure", "BUCKET KEY", "ensure a stored variant and print the outcome", runEnsure},
	{"backfill", "BUCKET [PREFIX]", "ensure a variant for every original under a prefix", runBackfill},
	{"health", "", "check the service's health", runHealth},
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	e := env{stdin: stdin, stdout: stdout, stderr: stderr, lookup: lookup}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		if err == nil {
			return exitOK
		}
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "imgedge %s: %v\n", c.name, err)
		return exitCode(err)
	}
	fmt.Fprintf(stderr, "imgedge: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: imgedge COMMAND [flags] ARGS\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %-16s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w, "\nRun imgedge COMMAND --help for its flags.")
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func usageErr(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// partialError marks a backfill that finished with per-object errors.
type partialError struct{ errors int64 }

func (p partialError) Error() string { return fmt.Sprintf("%d objects failed", p.errors) }

func exitCode(err error) int {
	var ue usageError
	var pe partialError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &pe):
		return exitPartial
	case errors.Is(err, client.ErrTooLarge): // retrying never helps
		return exitInvalid
	}
	switch status.Code(err) {
	case codes.NotFound:
		return exitNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return exitInvalid
	case codes.Unauthenticated, codes.PermissionDenied:
		return exitAuth
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return exitUnavailable
	}
	return exitFailure
}
