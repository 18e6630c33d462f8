package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/imgedge/imgedge/client"
	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// connFlags are the connection flags every subcommand takes.
type connFlags struct {
	addr, token, caFile, cert, key, serverName string
	insecure                                   bool
	timeout                                    time.Duration
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "service address (host:port, or dns:///name:port to balance over all its addresses)")
	fs.StringVar(&c.token, "token", "", "bearer token")
	fs.StringVar(&c.caFile, "ca-file", "", "verify the server against this CA (PEM) instead of the system roots")
	fs.StringVar(&c.cert, "cert", "", "client certificate (PEM), for mutual TLS")
	fs.StringVar(&c.key, "key", "", "client key (PEM), for mutual TLS")
	fs.StringVar(&c.serverName, "server-name", "", "name expected in the server's certificate")
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext, no TLS (loopback and development only)")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "deadline of each call (backfill: none)")
}

var envTwins = map[string]string{
	"addr": "IMGEDGE_ADDR", "token": "IMGEDGE_TOKEN", "ca-file": "IMGEDGE_CA_FILE", "cert": "IMGEDGE_CLIENT_CERT",
	"key": "IMGEDGE_CLIENT_KEY", "server-name": "IMGEDGE_SERVER_NAME", "insecure": "IMGEDGE_INSECURE", "timeout": "IMGEDGE_TIMEOUT",
}

// parse applies environment twins, then the command line (flags win), and
// returns the positional arguments. Flags may come before or after them.
func parse(fs *flag.FlagSet, args []string, e env) ([]string, error) {
	for name, envName := range envTwins {
		if v, ok := e.lookup(envName); ok && fs.Lookup(name) != nil {
			if err := fs.Set(name, v); err != nil {
				return nil, usageErr("%s=%q: %v", envName, v, err)
			}
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// start parses a subcommand's command line, checks it has between min and
// max positional arguments, and dials the service.
func start(fs *flag.FlagSet, args []string, e env, conn *connFlags, min, max int, want string) ([]string, *client.Client, error) {
	pos, err := parse(fs, args, e)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) < min || len(pos) > max {
		return nil, nil, usageErr("%s", want)
	}
	c, err := conn.dial()
	if err != nil {
		return nil, nil, err
	}
	return pos, c, nil
}

func (c *connFlags) dial() (*client.Client, error) {
	opts := []client.Option{client.WithDefaultDeadline(c.timeout)}
	if c.insecure {
		if c.caFile != "" || c.cert != "" {
			return nil, usageErr("--insecure cannot be combined with --ca-file or --cert")
		}
		opts = append(opts, client.WithInsecure())
	} else {
		opts = append(opts, client.WithSystemTLS())
		if c.caFile != "" {
			opts = append(opts, client.WithCAFile(c.caFile))
		}
		if c.cert != "" || c.key != "" {
			opts = append(opts, client.WithClientCertificate(c.cert, c.key))
		}
		if c.serverName != "" {
			opts = append(opts, client.WithServerName(c.serverName))
		}
	}
	if c.token != "" {
		opts = append(opts, client.WithToken(c.token))
	}
	return client.New(c.addr, opts...)
}

// variantFlags describe a variant: a preset and overrides.
type variantFlags struct {
	preset, accept        string
	width, height, qualty *uint32
	fit                   imgedgev1.Fit
	format                imgedgev1.Format
	progressive, auto     bool
}

// The three requests that carry a variant, from the same flags.

func (v *variantFlags) transformOptions() *imgedgev1.TransformOptions {
	return &imgedgev1.TransformOptions{Preset: v.preset, Width: v.width, Height: v.height, Quality: v.qualty,
		Fit: v.fit, Format: v.format, Progressive: v.progressive, Accept: v.accept, AutoQuality: v.auto}
}

func (v *variantFlags) ensureRequest(bucket, key string) *imgedgev1.EnsureVariantRequest {
	return &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: key, Preset: v.preset, Width: v.width, Height: v.height,
		Quality: v.qualty, Fit: v.fit, Format: v.format, Progressive: v.progressive, Accept: v.accept, AutoQuality: v.auto}
}

func (v *variantFlags) backfillRequest(bucket, prefix string) *imgedgev1.BackfillRequest {
	return &imgedgev1.BackfillRequest{Bucket: bucket, Prefix: prefix, Preset: v.preset, Width: v.width, Height: v.height,
		Quality: v.qualty, Fit: v.fit, Format: v.format, Progressive: v.progressive, Accept: v.accept, AutoQuality: v.auto}
}

func (v *variantFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.preset, "preset", "", "preset name (default: the service's default preset)")
	fs.StringVar(&v.accept, "accept", "", `Accept header for --format auto, for example "image/avif,image/webp"`)
	fs.Func("width", "output width in pixels", uintFlag(&v.width))
	fs.Func("height", "output height in pixels", uintFlag(&v.height))
	fs.Func("quality", "encoder quality 1-100", uintFlag(&v.qualty))
	fs.Func("fit", "inside, cover or fill", func(s string) error {
		f, err := variant.ParseFit(s)
		v.fit = imgedgev1.Fit(f)
		return err
	})
	fs.Func("format", "auto, jpeg, webp, avif, png or best", func(s string) error {
		f, err := variant.ParseFormat(s)
		v.format = imgedgev1.Format(f)
		return err
	})
	fs.BoolVar(&v.progressive, "progressive", false, "progressive JPEG")
	fs.BoolVar(&v.auto, "auto-quality", false, "search the lowest quality meeting the service's perceptual target")
}

func uintFlag(dst **uint32) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a whole number: %w", err)
		}
		u := uint32(n)
		*dst = &u
		return nil
	}
}

func newFlagSet(name, args string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: imgedge %s [flags] %s\n\nFlags (environment twins in brackets):\n", name, args)
		fs.VisitAll(func(f *flag.Flag) {
			twin := ""
			if t, ok := envTwins[f.Name]; ok {
				twin = " [" + t + "]"
			}
			fmt.Fprintf(e.stderr, "  --%s%s\n    \t%s\n", f.Name, twin, strings.ReplaceAll(f.Usage, "\n", "\n    \t"))
		})
	}
	return fs
}
