package config

import (
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imgedge/imgedge/client/variant"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	cfg, err := Load(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != "127.0.0.1:50051" || cfg.Store != "file:./data" || cfg.Prefix != "ProcessedImages/" {
		t.Errorf("defaults: %+v", cfg)
	}
	p := cfg.Presets["default"]
	if p.Format != variant.FormatJPEG || p.Quality != 90 || p.Width != 0 {
		t.Errorf("the default preset is %+v, want same-size JPEG q90", p)
	}
}

// TestWorkersFollowTheCPUsTheProcessMayUse: the default pool is as large as
// GOMAXPROCS (a container's CPU limit), not the host's CPU count.
func TestWorkersFollowTheCPUsTheProcessMayUse(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if d := Default(); d.Workers != 1 || d.Queue != 4 {
		t.Errorf("with GOMAXPROCS 1 on %d CPUs: %d workers, queue %d, want 1 and 4", runtime.NumCPU(), d.Workers, d.Queue)
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "imgedge.yaml")
	yaml := `
grpc_addr: 127.0.0.1:1111
prefix: Variants/
max_source_bytes: 10MiB
process_timeout: 5s
presets:
  hero: {width: 1600, format: auto, target_score: 80}
  default: {format: webp, quality: 60}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load([]string{"--workers", "3"}, env(map[string]string{
		"IMGEDGE_CONFIG":    file,
		"IMGEDGE_PREFIX":    "FromEnv/",
		"IMGEDGE_WORKERS":   "9",
		"IMGEDGE_STORE":     "s3",
		"IMGEDGE_BUCKETS":   "a-bucket, b-bucket",
		"IMGEDGE_AUTO_AVIF": "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.GRPCAddr != "127.0.0.1:1111":
		t.Errorf("file value lost: %s", cfg.GRPCAddr)
	case cfg.Prefix != "FromEnv/":
		t.Errorf("env must beat the file: %s", cfg.Prefix)
	case cfg.Workers != 3:
		t.Errorf("flags must beat env: %d", cfg.Workers)
	case cfg.MaxSourceBytes != 10<<20 || cfg.ProcessTimeout != 5*time.Second:
		t.Errorf("typed file values: %d %v", cfg.MaxSourceBytes, cfg.ProcessTimeout)
	case cfg.Presets["hero"].Width != 1600 || cfg.Presets["hero"].TargetScore != 80 || cfg.Presets["default"].Format != variant.FormatWebP || cfg.Presets["thumbnail"].Width != 320:
		t.Errorf("presets: %+v", cfg.Presets)
	case len(cfg.Buckets) != 2 || cfg.Buckets[1] != "b-bucket" || cfg.AutoAVIF:
		t.Errorf("env lists and booleans: %+v %v", cfg.Buckets, cfg.AutoAVIF)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	_, err := Load([]string{"--jpeg-quality", "0", "--store", "ftp:x", "--webp-effort", "7"}, env(map[string]string{
		"IMGEDGE_WORKERS":    "many",
		"IMGEDGE_AVIF_SPEED": "12",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"IMGEDGE_WORKERS", "jpeg-quality 0", `store "ftp:x"`, "avif-speed 12", "webp-effort 7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestErrorsInAFixedOrder: settings alike are checked in their flags'
// order, so the same mistakes read the same on every run.
func TestErrorsInAFixedOrder(t *testing.T) {
	c := Default()
	c.JPEGQuality, c.WebPQuality, c.AVIFQuality = 0, 101, 0
	c.CallTimeout, c.ReloadPeriod, c.ReadinessInterval = 0, 0, 0
	c.KnownVariantTTL, c.FreeMemoryAfter = -1, -1
	want := c.Validate().Error()
	for _, names := range [][]string{
		{"jpeg-quality", "webp-quality", "avif-quality"},
		{"call-timeout", "reload-period", "readiness-interval"},
		{"known-variant-ttl", "free-memory-after"},
	} {
		for i := 1; i < len(names); i++ {
			if a, b := strings.Index(want, names[i-1]), strings.Index(want, names[i]); a < 0 || b < a {
				t.Errorf("%q before %q in %q", names[i], names[i-1], want)
			}
		}
	}
	for range 20 {
		if got := c.Validate().Error(); got != want {
			t.Fatalf("Validate said %q, then %q", want, got)
		}
	}
}

func TestFileRejectsUnknownKeysAndBadPresets(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown key":   "qualty: 5\n",
		"bad preset":    "presets:\n  x: {format: gif}\n",
		"bad target":    "presets:\n  x: {format: avif, target_score: 101}\n",
		"bad byte size": "max_source_bytes: lots\n",
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load([]string{"--config", file}, env(nil)); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("s3-path-style"); got != "IMGEDGE_S3_PATH_STYLE" {
		t.Errorf("EnvName = %s", got)
	}
}

func TestByteLimitsNest(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--max-stream-bytes", "10MiB"}, ""},
		{[]string{"--max-stream-bytes", "60MiB"}, "max-stream-bytes"},
		{[]string{"--max-source-bytes", "300MiB"}, "max-source-bytes"},
		{[]string{"--max-source-bytes", "300MiB", "--max-memory", "2GiB"}, ""},
	}
	for _, tt := range tests {
		_, err := Load(tt.args, env(nil))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%v: %v, want an error about %s", tt.args, err, tt.want)
		}
	}
}

func TestUsageListsEverythingOnce(t *testing.T) {
	var buf strings.Builder
	Usage(&buf)
	out := buf.String()
	for _, want := range []string{"imgedge-server health", "--print-config", "--ready", "(default 768MiB)", "[IMGEDGE_WORKERS]"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	for line := range strings.Lines(out) {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("a default twice: %q", line)
		}
	}
}

// TestShippedConfigMapLoads: the imgedge.yaml the Kubernetes manifests ship
// loads strictly and configures a server for a cluster.
func TestShippedConfigMapLoads(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "kubernetes", "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil || cm.Data["imgedge.yaml"] == "" {
		t.Fatalf("configmap.yaml: no imgedge.yaml (%v)", err)
	}
	file := filepath.Join(t.TempDir(), "imgedge.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["imgedge.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load([]string{"--config", file}, env(nil))
	if err != nil {
		t.Fatalf("the ConfigMap's imgedge.yaml: %v", err)
	}
	if cfg.MaxConnectionAge <= 0 || cfg.Loopback() || cfg.TokensFile == "" {
		t.Errorf("config: max_connection_age %v, loopback %v, tokens file %q", cfg.MaxConnectionAge, cfg.Loopback(), cfg.TokensFile)
	}
}

// TestPresetsRoundTripThroughYAML: presets as --print-config writes them
// (fit and format by name, auto_quality included) load back unchanged, and
// the built-in ones are variant.BuiltinPresets.
func TestPresetsRoundTripThroughYAML(t *testing.T) {
	cfg := Default()
	for _, p := range variant.BuiltinPresets {
		if cfg.Presets[p.Name] != p.Spec {
			t.Errorf("built-in preset %q: %+v, want %+v", p.Name, cfg.Presets[p.Name], p.Spec)
		}
	}
	cfg.Presets["hero"] = variant.Spec{Width: 1600, Height: 900, Fit: variant.FitCover, Format: variant.FormatAVIF, AutoQuality: true, TargetScore: 80}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "fit: cover") || !strings.Contains(string(out), "auto_quality: true") || !strings.Contains(string(out), "target_score: 80") {
		t.Errorf("presets are not written by name:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "imgedge.yaml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := Load([]string{"--config", file}, env(nil))
	if err != nil {
		t.Fatalf("loading --print-config's output: %v", err)
	}
	if !maps.Equal(back.Presets, cfg.Presets) {
		t.Errorf("presets after a round trip:\n%+v\nwant\n%+v", back.Presets, cfg.Presets)
	}
}
