package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

// TestGrpcurlWalkthrough runs the README's walkthrough: the real server
// wiring on the embedded local store, seeded with the shipped samples, and
// the real grpcurl listing, describing and calling it.
func TestGrpcurlWalkthrough(t *testing.T) {
	grpcurl := filepath.Join("..", "..", ".bin", "grpcurl")
	if _, err := os.Stat(grpcurl); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("grpcurl missing: %v (make tools installs it)", err)
		}
		t.Skip("grpcurl not installed: run make tools")
	}
	data := t.TempDir()
	photos := filepath.Join(data, "demo", "photos")
	if err := os.MkdirAll(photos, 0o755); err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile(filepath.Join("..", "..", "deploy", "dev", "samples", "photos", "saw.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(photos, "saw.jpg"), sample, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, []string{"--grpc-addr", addr, "--store", "file:" + data, "--log-level", "error", "--metrics-addr", "127.0.0.1:0"}, os.Stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server exited with %v", err)
		}
	})
	waitListening(t, addr)

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(grpcurl, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run(addr, "list"); !strings.Contains(out, "imgedge.v1.ImageTransformService") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Errorf("list:\n%s", out)
	}
	if out := run(addr, "describe", "imgedge.v1.ImageTransformService"); !strings.Contains(out, "rpc EnsureVariant") || !strings.Contains(out, "rpc Transform") {
		t.Errorf("describe:\n%s", out)
	}
	// describe prints the proto's documentation, field by field.
	if out := run(addr, "describe", "imgedge.v1.VariantSpec"); !strings.Contains(out, "// Name of a configured preset") || !strings.Contains(out, "// The viewer's format class") {
		t.Errorf("describe shows no comments:\n%s", out)
	}
	var resp struct {
		Outcome      string `json:"outcome"`
		Key          string `json:"key"`
		Size         string `json:"size"`
		OriginalSize string `json:"originalSize"`
	}
	out := run("-d", `{"bucket":"demo","key":"photos/saw.jpg"}`, addr, "imgedge.v1.ImageTransformService/EnsureVariant")
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if resp.Outcome != "OUTCOME_CREATED" || resp.Key != "ProcessedImages/full_q90/photos/saw.jpg.jpg" {
		t.Fatalf("EnsureVariant: %s", out)
	}
	variant, err := os.ReadFile(filepath.Join(data, "demo", filepath.FromSlash(resp.Key)))
	if err != nil {
		t.Fatal(err)
	}
	if _, format, err := testimages.Decode(variant); err != nil || format != "jpeg" || len(variant) >= len(sample) {
		t.Errorf("variant: %d bytes (original %d), format %q, %v", len(variant), len(sample), format, err)
	}
	out = run("-d", `{"bucket":"demo","key":"photos/saw.jpg"}`, addr, "imgedge.v1.ImageTransformService/EnsureVariant")
	if !strings.Contains(out, "OUTCOME_ALREADY_EXISTED") {
		t.Errorf("second call:\n%s", out)
	}
	// The README's target_score call: auto quality at a score of its own.
	out = run("-d", `{"bucket":"demo","key":"photos/saw.jpg","variant":{"width":720,"format":"FORMAT_AVIF","targetScore":80}}`, addr, "imgedge.v1.ImageTransformService/EnsureVariant")
	if !strings.Contains(out, "OUTCOME_CREATED") || !strings.Contains(out, `"key": "ProcessedImages/w720_qauto80/photos/saw.jpg.avif"`) {
		t.Errorf("targetScore 80:\n%s", out)
	}
}
