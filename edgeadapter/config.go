package edgeadapter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imgedge/imgedge/client"
	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/edgeadapter/cloudfront"
)

// Config is the adapter's configuration: a JSON file packaged with the
// function (Lambda@Edge has no environment variables), optionally
// overridden per distribution by S3-origin custom headers. JSON, so the
// Node.js launcher can read its deadline from the same file without
// dependencies.
type Config struct {
	Service Service `json:"service"`
	// DeadlineMS bounds the EnsureVariant call, well inside the event's budget.
	DeadlineMS int `json:"deadline_ms"`
	// MaxWaitMS is how long the service may spend building a missing
	// variant before it answers PENDING (the build goes on): the viewer
	// gets the original at once instead of waiting out the deadline.
	// 0: 40 % of DeadlineMS (1000 for the default 2500), at most
	// DeadlineMS - AnswerMarginMS.
	MaxWaitMS int `json:"max_wait_ms"`
	// LauncherDeadlineMS bounds a whole event in the Node.js launcher; past
	// it the launcher answers with the unchanged request. It must leave
	// LauncherMarginMS over DeadlineMS for starting the adapter and dialling.
	LauncherDeadlineMS int `json:"launcher_deadline_ms"`
	// Extensions (lower case, with the dot) of the requests handled.
	Extensions []string `json:"extensions"`
	// PathPrefixes of the URIs handled, for example ["/images/"].
	PathPrefixes []string `json:"path_prefixes"`
	// ProcessedPrefix is the service's variant prefix: such keys pass through.
	ProcessedPrefix string `json:"processed_prefix"`
	// Presets viewers may name with ?preset=.
	Presets []string `json:"presets"`
	// DefaultPreset applies when the query names none ("" lets the service
	// choose its default); "optimized" keeps the size and negotiates the format.
	DefaultPreset string `json:"default_preset"`
	// DefaultFormat applies when the query names none: usually "auto".
	DefaultFormat string `json:"default_format"`
	// Formats viewers may ask for with ?format=.
	Formats []string `json:"formats"`
	// Breakpoints: ?w= and ?h= snap up to the nearest one (capped at the largest).
	Breakpoints []int `json:"breakpoints"`
	// Quality bounds ?q=: clamped to [Min, Max] and rounded to Step.
	Quality QualityBounds `json:"quality"`
	// Buckets maps an origin's domain name to its bucket. S3 origin domains
	// ("BUCKET.s3.REGION.amazonaws.com") map to BUCKET without an entry.
	Buckets map[string]string `json:"buckets"`
	// Breaker opens after Failures consecutive service failures and stays
	// open for OpenMS, during which the service is not called at all.
	Breaker BreakerConfig `json:"breaker"`
}

// Service says how to reach the imgedge service.
type Service struct {
	Address    string `json:"address"`     // host:port or dns:///host:port
	Token      string `json:"token"`       // bearer token
	Insecure   bool   `json:"insecure"`    // plaintext: loopback and tests only
	CAFile     string `json:"ca_file"`     // verify the server against this CA (default: system roots)
	ServerName string `json:"server_name"` // expected name in the server's certificate
}

// transport is how the adapter dials the service.
func (s Service) transport() client.Transport {
	return client.Transport{Insecure: s.Insecure, CAFile: s.CAFile, ServerName: s.ServerName, Token: s.Token}
}

// QualityBounds bound a viewer's ?q=.
type QualityBounds struct {
	Min  int `json:"min"`
	Max  int `json:"max"`
	Step int `json:"step"`
}

// BreakerConfig tunes the circuit breaker.
type BreakerConfig struct {
	Failures int `json:"failures"`
	OpenMS   int `json:"open_ms"`
}

// DefaultConfig returns the defaults that a file overrides.
func DefaultConfig() Config {
	return Config{
		DeadlineMS:         2500,
		LauncherDeadlineMS: 3000,
		Extensions:         []string{".jpg", ".jpeg", ".png", ".webp", ".gif"},
		PathPrefixes:       []string{"/"},
		ProcessedPrefix:    variant.DefaultPrefix,
		Presets:            variant.PublicPresetNames(),
		DefaultPreset:      variant.PresetOptimized,
		DefaultFormat:      "auto",
		Formats:            []string{"auto", "jpeg", "webp", "avif"},
		Breakpoints:        []int{160, 320, 480, 640, 768, 1024, 1280, 1600, 1920, 2560},
		Quality:            QualityBounds{Min: 40, Max: 90, Step: 5},
		Breaker:            BreakerConfig{Failures: 5, OpenMS: 30_000},
	}
}

// LoadConfig reads a JSON configuration file over the defaults. Unknown
// fields are errors.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("edge config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("edge config %s: %w", path, err)
	}
	return cfg, cfg.Validate()
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Service.Address == "" {
		errs = append(errs, errors.New("service.address is empty"))
	}
	if _, err := c.Service.transport().Options(); err != nil {
		errs = append(errs, fmt.Errorf("service: %w", err))
	}
	if c.DeadlineMS <= AnswerMarginMS || c.DeadlineMS > 25_000 {
		errs = append(errs, fmt.Errorf("deadline_ms %d must be in %d–25000 (origin-request events get 30 s)", c.DeadlineMS, AnswerMarginMS+1))
	}
	if c.LauncherDeadlineMS < c.DeadlineMS+LauncherMarginMS || c.LauncherDeadlineMS > 29_000 {
		errs = append(errs, fmt.Errorf("launcher_deadline_ms %d must exceed deadline_ms %d by at least %d (starting the adapter and dialling take 200–320 ms on a cold start) and stay under 29000",
			c.LauncherDeadlineMS, c.DeadlineMS, LauncherMarginMS))
	}
	if c.MaxWaitMS < 0 || c.MaxWaitMS > c.DeadlineMS-AnswerMarginMS {
		errs = append(errs, fmt.Errorf("max_wait_ms %d must be in 0 (the default) to %d: deadline_ms %d less %d ms for the service's answer to arrive",
			c.MaxWaitMS, c.DeadlineMS-AnswerMarginMS, c.DeadlineMS, AnswerMarginMS))
	}
	if err := variant.ValidatePrefix(c.ProcessedPrefix); err != nil {
		errs = append(errs, err)
	}
	if len(c.Breakpoints) == 0 || !slices.IsSorted(c.Breakpoints) || c.Breakpoints[0] <= 0 {
		errs = append(errs, errors.New("breakpoints must be positive and ascending"))
	}
	if c.Quality.Min < 1 || c.Quality.Max > 100 || c.Quality.Min > c.Quality.Max || c.Quality.Step < 1 {
		errs = append(errs, fmt.Errorf("quality bounds %+v are not 1 ≤ min ≤ max ≤ 100 with step ≥ 1", c.Quality))
	}
	for _, f := range append([]string{c.DefaultFormat}, c.Formats...) {
		if _, err := variant.ParseFormat(f); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Breaker.Failures < 1 || c.Breaker.OpenMS < 1 {
		errs = append(errs, fmt.Errorf("breaker %+v needs failures ≥ 1 and open_ms ≥ 1", c.Breaker))
	}
	return errors.Join(errs...)
}

// Deployable reports what would make a valid configuration fail in
// front of real traffic: the example file's placeholders left in, or a
// plaintext service off loopback.
func (c Config) Deployable() error {
	var errs []error
	host, _, _ := strings.Cut(strings.TrimPrefix(c.Service.Address, "dns:///"), ":")
	if host == "example.com" || strings.HasSuffix(host, ".example.com") || strings.HasSuffix(host, ".example") {
		errs = append(errs, fmt.Errorf("service.address %q is the example's placeholder: set your service's address", c.Service.Address))
	}
	if strings.HasPrefix(c.Service.Token, "REPLACE-") {
		errs = append(errs, errors.New("service.token is the example's placeholder: set a token the service accepts"))
	}
	if c.Service.Insecure && host != "localhost" && !strings.HasPrefix(host, "127.") && host != "[::1]" {
		errs = append(errs, fmt.Errorf("service.insecure sends the token in plaintext to %s: Lambda@Edge reaches the service over the internet", host))
	}
	return errors.Join(errs...)
}

// Margins the configuration must leave.
const (
	// LauncherMarginMS: the launcher's deadline over the call's, for a cold
	// adapter's start and dial (measured at 200–320 ms).
	LauncherMarginMS = 500
	// AnswerMarginMS: the call's deadline over max_wait, for the PENDING
	// answer to come back.
	AnswerMarginMS = 250
)

// Deadline is the EnsureVariant deadline.
func (c Config) Deadline() time.Duration { return time.Duration(c.DeadlineMS) * time.Millisecond }

// MaxWait is how long the service may build before answering PENDING.
func (c Config) MaxWait() time.Duration {
	ms := c.MaxWaitMS
	if ms == 0 {
		ms = min(c.DeadlineMS*2/5, c.DeadlineMS-AnswerMarginMS)
	}
	return time.Duration(ms) * time.Millisecond
}

// Header names on an S3 origin that override the packaged configuration
// for one distribution. They are set by the distribution's owner, never by
// viewers (CloudFront sends them to the origin, not the other way round).
const (
	HeaderService  = "x-imgedge-service"  // service address
	HeaderToken    = "x-imgedge-token"    // bearer token
	HeaderBucket   = "x-imgedge-bucket"   // bucket name
	HeaderDeadline = "x-imgedge-deadline" // EnsureVariant deadline in ms
	HeaderPreset   = "x-imgedge-preset"   // default preset
)

// withOrigin applies origin custom-header overrides.
func (c Config) withOrigin(h cloudfront.Headers) (Config, string) {
	if v := h.Get(HeaderService); v != "" {
		c.Service.Address = v
	}
	if v := h.Get(HeaderToken); v != "" {
		c.Service.Token = v
	}
	if v := h.Get(HeaderDeadline); v != "" {
		if ms, err := strconv.Atoi(v); err == nil && ms > AnswerMarginMS && ms <= c.LauncherDeadlineMS-LauncherMarginMS {
			c.DeadlineMS = ms
			if c.MaxWaitMS > ms-AnswerMarginMS {
				c.MaxWaitMS = 0 // derived from the new deadline
			}
		}
	}
	if v := h.Get(HeaderPreset); v != "" {
		c.DefaultPreset = v
	}
	return c, h.Get(HeaderBucket)
}

// bucketFor maps an origin domain to a bucket.
func (c Config) bucketFor(domain string) string {
	if b, ok := c.Buckets[domain]; ok {
		return b
	}
	if i := strings.Index(domain, ".s3."); i > 0 && strings.HasSuffix(domain, ".amazonaws.com") {
		return domain[:i]
	}
	if i := strings.Index(domain, ".s3-"); i > 0 && strings.HasSuffix(domain, ".amazonaws.com") {
		return domain[:i]
	}
	return ""
}
