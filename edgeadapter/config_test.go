package edgeadapter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("lambda", "config.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Deadline().Milliseconds() != 2500 || cfg.MaxWait().Milliseconds() != 1000 || cfg.Service.Address == "" {
		t.Errorf("example config: %+v", cfg)
	}
	for deadline, want := range map[int]int64{2500: 1000, 5000: 2000, 300: 50} {
		c := DefaultConfig()
		c.DeadlineMS = deadline
		if got := c.MaxWait().Milliseconds(); got != want {
			t.Errorf("default max wait for a %d ms deadline: %d ms, want %d", deadline, got, want)
		}
	}
}

func TestConfigRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field":        `{"service":{"address":"a:1"},"deadline":5}`,
		"no address":           `{}`,
		"deadline too long":    `{"service":{"address":"a:1"},"deadline_ms":29000,"launcher_deadline_ms":29500}`,
		"launcher too short":   `{"service":{"address":"a:1"},"deadline_ms":2000,"launcher_deadline_ms":1000}`,
		"no launcher margin":   `{"service":{"address":"a:1"},"deadline_ms":2900,"launcher_deadline_ms":3000}`,
		"max wait past budget": `{"service":{"address":"a:1"},"deadline_ms":2500,"max_wait_ms":2400}`,
		"negative max wait":    `{"service":{"address":"a:1"},"max_wait_ms":-1}`,
		"unsorted breakpoints": `{"service":{"address":"a:1"},"breakpoints":[640,320]}`,
		"bad format":           `{"service":{"address":"a:1"},"formats":["bmp"]}`,
		"plaintext with a CA":  `{"service":{"address":"a:1","insecure":true,"ca_file":"ca.pem"}}`,
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(file); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestBucketFor(t *testing.T) {
	cfg := testConfig()
	for domain, want := range map[string]string{
		"demo.s3.amazonaws.com":                       "demo",
		"demo.s3.eu-west-1.amazonaws.com":             "demo",
		"my.dotted.bucket.s3-us-west-2.amazonaws.com": "my.dotted.bucket",
		"example.org":                                 "example-web",
		"other.org":                                   "",
	} {
		if got := cfg.bucketFor(domain); got != want {
			t.Errorf("bucketFor(%q) = %q, want %q", domain, got, want)
		}
	}
}

func TestDeployableRefusesPlaceholders(t *testing.T) {
	example, err := LoadConfig(filepath.Join("lambda", "config.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	err = example.Deployable()
	if err == nil || !strings.Contains(err.Error(), "service.address") || !strings.Contains(err.Error(), "service.token") {
		t.Errorf("the example config: %v, want both placeholders refused", err)
	}
	real := example
	real.Service.Address, real.Service.Token = "images-api.acme.net:443", "s3cr3t"
	if err := real.Deployable(); err != nil {
		t.Errorf("a filled-in config: %v", err)
	}
	plain := real
	plain.Service.Insecure = true
	if err := plain.Deployable(); err == nil {
		t.Error("plaintext to a public address was accepted")
	}
}
