package main

import (
	"errors"
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
			if errors.Is(err, flag.ErrHelp) {
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
	if c.insecure && (c.caFile != "" || c.cert != "" || c.key != "") {
		return nil, usageErr("--insecure cannot be combined with --ca-file, --cert or --key")
	}
	opts, err := client.Transport{Insecure: c.insecure, CAFile: c.caFile, CertFile: c.cert, KeyFile: c.key,
		ServerName: c.serverName, Token: c.token}.Options()
	if err != nil {
		return nil, err
	}
	return client.New(c.addr, append(opts, client.WithDefaultDeadline(c.timeout))...)
}

// variantFlags fill the VariantSpec that EnsureVariant, Transform and
// Backfill all carry. Values go to the service as given (an explicit
// --width 0 included), so its validation and messages are the only ones.
type variantFlags struct {
	spec imgedgev1.VariantSpec
}

func (v *variantFlags) register(fs *flag.FlagSet) {
	s := &v.spec
	fs.StringVar(&s.Preset, "preset", "", "preset name (default: the service's default preset)")
	fs.Func("accept", `Accept header for --format auto or best, for example "image/avif,image/webp"`, func(h string) error {
		s.Viewer = &imgedgev1.VariantSpec_Accept{Accept: h}
		return nil
	})
	fs.Func("width", "output width in pixels", uintFlag(&s.Width))
	fs.Func("height", "output height in pixels", uintFlag(&s.Height))
	fs.Func("quality", "encoder quality 1-100", uintFlag(&s.Quality))
	fs.Func("fit", "inside, cover or fill", func(name string) error {
		f, err := variant.ParseFit(name)
		s.Fit = imgedgev1.Fit(f)
		return err
	})
	fs.Func("format", "auto, jpeg, webp, avif, png or best", func(name string) error {
		f, err := variant.ParseFormat(name)
		s.Format = imgedgev1.Format(f)
		return err
	})
	fs.BoolVar(&s.Progressive, "progressive", false, "progressive JPEG")
	fs.BoolVar(&s.AutoQuality, "auto-quality", false, "search the lowest quality meeting the service's perceptual target")
	fs.Func("target-score", "SSIMULACRA2 score auto-quality must reach, 1-100 (70 high, 80 very high, 90 visually lossless); implies --auto-quality", uintFlag(&s.TargetScore))
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
