// Package config loads the server's configuration from, in rising order of
// precedence: built-in defaults, a YAML file (--config / IMGEDGE_CONFIG),
// IMGEDGE_* environment variables, and command-line flags. Every flag has an
// environment twin named IMGEDGE_ + the flag name in upper case with dashes
// as underscores. All problems are reported at once.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/auth"
)

// Config is the server's whole configuration.
type Config struct {
	GRPCAddr        string        `yaml:"grpc_addr"`
	Store           string        `yaml:"store"` // "file:DIR" or "s3"
	S3Endpoint      string        `yaml:"s3_endpoint"`
	S3Region        string        `yaml:"s3_region"`
	S3PathStyle     bool          `yaml:"s3_path_style"`
	Prefix          string        `yaml:"prefix"`
	Buckets         []string      `yaml:"buckets"` // allow-list; empty allows any
	DefaultPreset   string        `yaml:"default_preset"`
	Presets         PresetMap     `yaml:"presets"`
	JPEGQuality     int           `yaml:"jpeg_quality"`
	WebPQuality     int           `yaml:"webp_quality"`
	AVIFQuality     int           `yaml:"avif_quality"`
	AVIFSpeed       int           `yaml:"avif_speed"`
	WebPEffort      int           `yaml:"webp_effort"`
	AutoAVIF        bool          `yaml:"auto_avif"`
	AutoWebP        bool          `yaml:"auto_webp"`
	KeepMetadata    bool          `yaml:"keep_metadata"`
	MozJPEG         bool          `yaml:"mozjpeg"`
	JPEGProgressive bool          `yaml:"jpeg_progressive"`
	CacheControl    string        `yaml:"variant_cache_control"`
	MinSaving       float64       `yaml:"min_saving"`
	MaxSourceBytes  Bytes         `yaml:"max_source_bytes"`
	MaxSourcePixels int64         `yaml:"max_source_pixels"`
	MaxWidth        int           `yaml:"max_width"`
	MaxHeight       int           `yaml:"max_height"`
	MaxStreamBytes  Bytes         `yaml:"max_stream_bytes"`
	MaxMemory       Bytes         `yaml:"max_memory"`
	Workers         int           `yaml:"workers"`
	Queue           int           `yaml:"queue"`
	ProcessTimeout  time.Duration `yaml:"process_timeout"`
	KnownVariantTTL time.Duration `yaml:"known_variant_ttl"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	LogLevel        string        `yaml:"log_level"`
	CallTimeout     time.Duration `yaml:"call_timeout"`

	// Transport and authentication.
	TLSCert      string        `yaml:"tls_cert"`
	TLSKey       string        `yaml:"tls_key"`
	ClientCA     string        `yaml:"client_ca"`
	TokensFile   string        `yaml:"tokens_file"`
	Tokens       []auth.Token  `yaml:"tokens"`
	Insecure     bool          `yaml:"insecure"`
	ReloadPeriod time.Duration `yaml:"reload_period"`

	// Connections.
	MaxConnectionAge      time.Duration `yaml:"max_connection_age"`
	MaxConnectionAgeGrace time.Duration `yaml:"max_connection_age_grace"`
	KeepaliveMinTime      time.Duration `yaml:"keepalive_min_time"`

	// Observability and lifecycle.
	MetricsAddr       string        `yaml:"metrics_addr"`
	ReadinessInterval time.Duration `yaml:"readiness_interval"`
	FreeMemoryAfter   time.Duration `yaml:"free_memory_after"`

	// Perceptual auto-quality (quality: auto, format: best).
	AutoQuality AutoQuality `yaml:"auto_quality"`

	ConfigFile string `yaml:"-"`
}

// AutoQuality tunes the perceptual quality search.
type AutoQuality struct {
	// Targets are the SSIMULACRA2 scores (against the resized source, as a
	// viewer sees both; 90 visually lossless, 80 very high, 70 high, 50
	// medium) each format must reach: jpeg, webp, avif.
	Targets           map[string]float64 `yaml:"targets"`
	MinQuality        int                `yaml:"min_quality"`
	MaxQuality        int                `yaml:"max_quality"`
	Steps             int                `yaml:"steps"`
	SkipJPEGAtOrBelow int                `yaml:"skip_jpeg_at_or_below"`
}

// PresetMap holds presets by name, as the configuration file writes them
// (width, height, fit, format, quality, progressive, auto_quality,
// target_score).
type PresetMap map[string]variant.Spec

// builtinPresets are variant.BuiltinPresets by name.
func builtinPresets() PresetMap {
	m := PresetMap{}
	for _, p := range variant.BuiltinPresets {
		m[p.Name] = p.Spec
	}
	return m
}

// Default returns the built-in configuration: a local store under ./data on
// loopback, and presets including the original prototype's behaviour as
// "default" (same size, JPEG quality 90) and "optimized" (same size, format
// negotiated, each format's default quality), which the edge uses.
func Default() Config {
	return Config{
		GRPCAddr:        "127.0.0.1:50051",
		Store:           "file:./data",
		Prefix:          variant.DefaultPrefix,
		DefaultPreset:   variant.PresetDefault,
		Presets:         builtinPresets(),
		JPEGQuality:     80,
		WebPQuality:     75,
		AVIFQuality:     50,
		AVIFSpeed:       -1,
		WebPEffort:      -1,
		MozJPEG:         true,
		JPEGProgressive: true,
		AutoAVIF:        true,
		AutoWebP:        true,
		MinSaving:       0.05,
		CacheControl:    "public, max-age=604800",
		MaxSourceBytes:  50 << 20,
		MaxSourcePixels: 50_000_000,
		MaxWidth:        8192,
		MaxHeight:       8192,
		MaxMemory:       768 << 20,
		// The CPUs the process may use: GOMAXPROCS, which Go sets from a
		// container's CPU limit, where NumCPU counts the host's.
		Workers:         runtime.GOMAXPROCS(0),
		Queue:           4 * runtime.GOMAXPROCS(0),
		ProcessTimeout:  30 * time.Second,
		KnownVariantTTL: 10 * time.Second,
		ShutdownTimeout: 20 * time.Second,
		LogLevel:        "info",
		CallTimeout:     60 * time.Second,
		ReloadPeriod:    30 * time.Second,

		MaxConnectionAge:      5 * time.Minute,
		MaxConnectionAgeGrace: 30 * time.Second,
		KeepaliveMinTime:      10 * time.Second,

		MetricsAddr:       "127.0.0.1:9464",
		ReadinessInterval: 10 * time.Second,
		FreeMemoryAfter:   5 * time.Second,

		AutoQuality: AutoQuality{
			Targets:    map[string]float64{"jpeg": 70, "webp": 70, "avif": 70, "png": 70},
			MinQuality: 40, MaxQuality: 95, Steps: 6, SkipJPEGAtOrBelow: 25,
		},
	}
}

// EnvPrefix starts every environment variable the server reads.
const EnvPrefix = "IMGEDGE_"

// EnvName returns the environment twin of a flag: "grpc-addr" → "IMGEDGE_GRPC_ADDR".
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flags binds every setting to a flag of fs.
func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "YAML configuration `file` (presets, limits, buckets)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC listen `address`")
	fs.StringVar(&c.Store, "store", c.Store, "object store: file:DIR (local directory) or s3")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", c.S3Endpoint, "custom S3 endpoint `URL` for S3-compatible servers")
	fs.StringVar(&c.S3Region, "s3-region", c.S3Region, "S3 region (default: from the AWS configuration chain)")
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", c.S3PathStyle, "use path-style S3 addressing (always on with --s3-endpoint)")
	fs.StringVar(&c.Prefix, "prefix", c.Prefix, "key `prefix` under which variants are stored")
	fs.Func("buckets", "comma-separated allow-list of buckets (default: any)", func(s string) error {
		c.Buckets = splitList(s)
		return nil
	})
	fs.StringVar(&c.DefaultPreset, "default-preset", c.DefaultPreset, "preset used when a request names none")
	fs.IntVar(&c.JPEGQuality, "jpeg-quality", c.JPEGQuality, "default JPEG quality")
	fs.IntVar(&c.WebPQuality, "webp-quality", c.WebPQuality, "default WebP quality")
	fs.IntVar(&c.AVIFQuality, "avif-quality", c.AVIFQuality, "default AVIF quality")
	fs.IntVar(&c.WebPEffort, "webp-effort", c.WebPEffort, "WebP encoder effort (libwebp's method), 0 (fastest) to 6; -1: by the output's size\n(4 up to 13 MP, 2 above: an auto-quality search of the costliest content stays inside the process timeout)")
	fs.IntVar(&c.AVIFSpeed, "avif-speed", c.AVIFSpeed, "AVIF encoder speed, 0 (slowest) to 9 (fastest), coding at 8 bits; -1: by the output's size\n(6 at 10 bits up to 2 MP, 6 up to 3 MP, 8 up to 6.5 MP, 9 above: one encode of the costliest content stays within ~8 s of CPU;\nan auto-quality search measures its content on the first trial and keeps 6 where that fits ~16 s, at 10 bits up to 6.5 MP)")
	fs.BoolVar(&c.AutoAVIF, "auto-avif", c.AutoAVIF, "format auto may choose AVIF")
	fs.BoolVar(&c.AutoWebP, "auto-webp", c.AutoWebP, "format auto may choose WebP")
	fs.BoolVar(&c.KeepMetadata, "keep-metadata", c.KeepMetadata, "keep EXIF/XMP metadata in variants")
	fs.BoolVar(&c.MozJPEG, "mozjpeg", c.MozJPEG, "encode JPEG with mozjpeg's trellis quantisation, deringing and quant table 5, chroma subsampled below q95 (with fitted luma for PNG and GIF originals)")
	fs.BoolVar(&c.JPEGProgressive, "jpeg-progressive", c.JPEGProgressive, "make every JPEG progressive, scans optimised per image (fewer bytes at equal quality, more encode CPU)")
	fs.StringVar(&c.CacheControl, "variant-cache-control", c.CacheControl, "Cache-Control stored on variants (originals keep their own)")
	fs.Float64Var(&c.MinSaving, "min-saving", c.MinSaving, "fraction of the original's size a variant must save to be served")
	fs.Var(&c.MaxSourceBytes, "max-source-bytes", "largest original, in bytes (suffixes KiB, MiB, GiB)")
	fs.Int64Var(&c.MaxSourcePixels, "max-source-pixels", c.MaxSourcePixels, "largest original, in pixels")
	fs.IntVar(&c.MaxWidth, "max-width", c.MaxWidth, "largest output width")
	fs.IntVar(&c.MaxHeight, "max-height", c.MaxHeight, "largest output height")
	fs.Var(&c.MaxStreamBytes, "max-stream-bytes", "largest Transform input stream, in bytes, at most max-source-bytes (default: max-source-bytes)")
	fs.Var(&c.MaxMemory, "max-memory", "memory for image work: a quarter for sources and uploads held at once (refused past it), the rest for decoded pixels (waited for)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent image transforms (default: the CPUs the process may use, GOMAXPROCS: a container's CPU limit)")
	fs.IntVar(&c.Queue, "queue", c.Queue, "calls that may wait for a worker before ResourceExhausted")
	fs.DurationVar(&c.ProcessTimeout, "process-timeout", c.ProcessTimeout, "bound on one variant build (fetch, transform, store)")
	fs.DurationVar(&c.KnownVariantTTL, "known-variant-ttl", c.KnownVariantTTL, "how long a variant (or keep-original marker) a lookup found is trusted without HEADing it again;\nthe original is HEADed on every call, so a replaced original is seen at once, but a variant deleted\nbehind the service is still answered for up to this long; a build that failed because of the original\n(undecodable, past a limit) fails again for this long without fetching it (0: remember nothing)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on draining in-flight calls at shutdown")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "bound on one EnsureVariant or Transform call (Backfill is bounded by its caller)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate `file` (PEM); reloaded on change and on SIGHUP")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS key `file` (PEM)")
	fs.StringVar(&c.ClientCA, "client-ca", c.ClientCA, "require client certificates signed by this CA `file` (mutual TLS)")
	fs.StringVar(&c.TokensFile, "tokens-file", c.TokensFile, "YAML `file` of accepted bearer tokens (reloaded on change and on SIGHUP)")
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, "allow plaintext and no authentication on a non-loopback address")
	fs.DurationVar(&c.ReloadPeriod, "reload-period", c.ReloadPeriod, "how often TLS and token files are checked for changes")
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", c.MaxConnectionAge, "close connections after this long so clients re-balance onto new replicas")
	fs.DurationVar(&c.MaxConnectionAgeGrace, "max-connection-age-grace", c.MaxConnectionAgeGrace, "time in-flight calls get after max-connection-age")
	fs.DurationVar(&c.KeepaliveMinTime, "keepalive-min-time", c.KeepaliveMinTime, "refuse client keepalive pings more frequent than this")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "Prometheus /metrics listen `address` (empty: off)")
	fs.DurationVar(&c.ReadinessInterval, "readiness-interval", c.ReadinessInterval, "how often readiness re-checks the store and libvips")
	fs.DurationVar(&c.FreeMemoryAfter, "free-memory-after", c.FreeMemoryAfter, "give the memory image work freed back to the system once no job has run for this long\n(between one and two of these after a burst ends; 0: never)")
}

// Load builds the configuration from args (without the program name),
// the environment as seen through lookup, and the file they name.
func Load(args []string, lookup func(string) (string, bool)) (Config, error) {
	// First pass: find the configuration file.
	probe := Default()
	pfs := flag.NewFlagSet("imgedge-server", flag.ContinueOnError)
	pfs.SetOutput(io.Discard)
	probe.flags(pfs)
	if err := pfs.Parse(args); err != nil {
		return Config{}, err
	}
	file := probe.ConfigFile
	if v, ok := lookup(EnvName("config")); ok && !isSet(pfs, "config") {
		file = v
	}

	cfg := Default()
	if file != "" {
		if err := cfg.loadFile(file); err != nil {
			return Config{}, err
		}
	}
	fs := flag.NewFlagSet("imgedge-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.flags(fs)
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := lookup(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		errs = append(errs, err)
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	cfg.ConfigFile = file
	if err := errors.Join(append(errs, cfg.Validate())...); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Usage writes the flags and their environment twins to w.
func Usage(w io.Writer) {
	cfg := Default()
	fs := flag.NewFlagSet("imgedge-server", flag.ContinueOnError)
	cfg.flags(fs)
	fmt.Fprint(w, `Usage: imgedge-server [flags]            serve
       imgedge-server --print-config [flags]  print the effective configuration (YAML, secrets redacted) and exit
       imgedge-server health [--addr A] [--tls] [--ca-file F] [--server-name N] [--timeout D] [--ready]
                                              probe a running server: exit 0 when SERVING

Every flag has an environment twin, shown in brackets; flags win.

`)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\t[%s]\n    \t%s", f.Name, name, EnvName(f.Name), strings.ReplaceAll(usage, "\n", "\n    \t"))
		def := f.DefValue
		if b, ok := f.Value.(*Bytes); ok {
			def = b.human()
		}
		if def != "" && def != "false" && def != "0" && !strings.Contains(usage, "(default") {
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	})
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// loadFile merges a YAML file over the current values. Unknown keys are errors.
func (c *Config) loadFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	builtin := c.Presets
	c.Presets = nil
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	// Presets in the file add to, or replace by name, the built-in ones.
	merged := PresetMap{}
	for n, p := range builtin {
		merged[n] = p
	}
	for n, p := range c.Presets {
		merged[n] = p
	}
	c.Presets = merged
	return nil
}

// Validate checks the configuration, reporting every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc-addr is empty"))
	}
	if _, _, err := c.StoreKind(); err != nil {
		errs = append(errs, err)
	}
	if err := variant.ValidatePrefix(c.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("prefix: %w", err))
	}
	for _, q := range []named[int]{{"jpeg-quality", c.JPEGQuality}, {"webp-quality", c.WebPQuality}, {"avif-quality", c.AVIFQuality}} {
		if q.value < 1 || q.value > 100 {
			errs = append(errs, fmt.Errorf("%s %d is out of range (1–100)", q.name, q.value))
		}
	}
	if c.WebPEffort < -1 || c.WebPEffort > 6 {
		errs = append(errs, fmt.Errorf("webp-effort %d is out of range (0–6, or -1 for by size)", c.WebPEffort))
	}
	if c.AVIFSpeed < -1 || c.AVIFSpeed > 9 {
		errs = append(errs, fmt.Errorf("avif-speed %d is out of range (0–9, or -1 for by size)", c.AVIFSpeed))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers %d must be at least 1", c.Workers))
	}
	if c.Queue < 0 {
		errs = append(errs, fmt.Errorf("queue %d must not be negative", c.Queue))
	}
	if c.MaxStreamBytes < 0 || c.MaxStreamBytes > c.MaxSourceBytes {
		errs = append(errs, fmt.Errorf("max-stream-bytes %d must be between 0 (meaning max-source-bytes) and max-source-bytes %d", c.MaxStreamBytes, c.MaxSourceBytes))
	}
	if c.MaxSourceBytes > c.MaxMemory/4 {
		errs = append(errs, fmt.Errorf("max-source-bytes %d must fit in the quarter of max-memory %d that holds sources", c.MaxSourceBytes, c.MaxMemory))
	}
	if _, ok := c.Presets[c.DefaultPreset]; !ok {
		errs = append(errs, fmt.Errorf("default-preset %q is not a defined preset", c.DefaultPreset))
	}
	names := make([]string, 0, len(c.Presets))
	for n := range c.Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := c.Presets[n].Validate(variant.Limits{MaxWidth: c.MaxWidth, MaxHeight: c.MaxHeight}); err != nil {
			errs = append(errs, fmt.Errorf("preset %q: %w", n, err))
		}
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	a := c.AutoQuality
	if a.MinQuality < 1 || a.MaxQuality > 100 || a.MinQuality > a.MaxQuality || a.Steps < 1 {
		errs = append(errs, fmt.Errorf("auto_quality: want 1 ≤ min_quality ≤ max_quality ≤ 100 and steps ≥ 1, got %+v", a))
	}
	for f, target := range a.Targets {
		if ff, err := variant.ParseFormat(f); err != nil || !ff.Concrete() || target <= 0 || target > 100 {
			errs = append(errs, fmt.Errorf("auto_quality target %s: %v must be jpeg, webp, avif or png with a SSIMULACRA2 score in (0, 100]", f, target))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key go together"))
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("client-ca needs tls-cert and tls-key"))
	}
	for _, d := range []named[time.Duration]{{"call-timeout", c.CallTimeout}, {"reload-period", c.ReloadPeriod}, {"readiness-interval", c.ReadinessInterval}} {
		if d.value <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	for _, d := range []named[time.Duration]{{"known-variant-ttl", c.KnownVariantTTL}, {"free-memory-after", c.FreeMemoryAfter}} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (0 turns it off)", d.name))
		}
	}
	return errors.Join(errs...)
}

// named is a setting's value with its flag's name, for Validate to check
// settings alike in a fixed order (its errors read the same every time).
type named[T any] struct {
	name  string
	value T
}

// StoreKind splits the store setting into its kind ("file" or "s3") and,
// for "file", its directory.
func (c *Config) StoreKind() (kind, dir string, err error) {
	switch {
	case c.Store == "s3":
		return "s3", "", nil
	case strings.HasPrefix(c.Store, "file:") && len(c.Store) > len("file:"):
		return "file", strings.TrimPrefix(c.Store, "file:"), nil
	}
	return "", "", fmt.Errorf("store %q: want file:DIR or s3", c.Store)
}

// PresetSpecs returns a copy of the presets.
func (c *Config) PresetSpecs() map[string]variant.Spec {
	return maps.Clone(c.Presets)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Bytes is a byte count that parses suffixes: 512KiB, 50MiB, 1GiB.
type Bytes int64

func (b *Bytes) String() string { return strconv.FormatInt(int64(*b), 10) }

// human writes a byte count with the largest suffix that divides it.
func (b *Bytes) human() string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n := int64(*b); n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return b.String()
}

// Set parses a byte count.
func (b *Bytes) Set(s string) error {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid byte count %q", s)
	}
	*b = Bytes(n * mult)
	return nil
}

// UnmarshalYAML accepts a number or a string with a suffix.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error { return b.Set(n.Value) }

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Redacted returns the configuration as YAML with secrets replaced, for
// --print-config.
func (c Config) Redacted() ([]byte, error) {
	c.Tokens = slices.Clone(c.Tokens)
	for i := range c.Tokens {
		if c.Tokens[i].Token != "" {
			c.Tokens[i].Token = "REDACTED"
		}
		if c.Tokens[i].SHA256 != "" {
			c.Tokens[i].SHA256 = "REDACTED"
		}
	}
	return yaml.Marshal(c)
}

// Loopback reports whether the gRPC address only listens on loopback.
func (c Config) Loopback() bool {
	host, _, err := net.SplitHostPort(c.GRPCAddr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
