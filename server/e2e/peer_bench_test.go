//go:build report

// The peer benchmark (make bench-peers): the engine against sharp, same run.
// Built only with -tags report.

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/imaging"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// sharpResult is what testdata/sharp-bench.js prints.
type sharpResult struct {
	Ops     int64   `json:"ops"`
	Wall    float64 `json:"wall"`
	CPU     float64 `json:"cpu"`
	Bytes   int     `json:"bytes"`
	Libvips string  `json:"libvips"`
}

// TestPeerBenchmark measures the service's engine (the imaging package,
// in process, libvips' cache off) against sharp — the strongest peer that
// runs here, on its own libvips 8.18 with mozjpeg — on the benchmark's
// jobs, at concurrency = cores, in interleaved rounds of the same run.
// `make bench-peers` runs it (IMGEDGE_SHARP names sharp's install).
func TestPeerBenchmark(t *testing.T) {
	sharpDir := os.Getenv("IMGEDGE_SHARP")
	if sharpDir == "" {
		t.Skip("set IMGEDGE_SHARP (make bench-peers)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	src := photo2725()
	input := filepath.Join(t.TempDir(), "in.jpg")
	if err := os.WriteFile(input, src, 0o644); err != nil {
		t.Fatal(err)
	}
	proc := app.NewProcessor(config.Default())
	info, err := proc.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	conc := runtime.NumCPU()
	const rounds, seconds = 3, 4
	jobs := []struct {
		name  string
		width int
	}{{"2725×2225 → 720 px JPEG q80", 720}, {"2725×2225 same-size JPEG q80", 0}}
	var b strings.Builder
	fmt.Fprintf(&b, "libvips %s (imgedge) vs sharp, concurrency %d, %d interleaved rounds of %d s per cell; CPU per image includes everything each process did.\n\n", imaging.Version(), conc, rounds, seconds)
	fmt.Fprint(&b, "| job | imgedge img/s | CPU ms/img | sharp img/s | CPU ms/img | imgedge / sharp | output bytes (imgedge / sharp) |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, job := range jobs {
		spec := variant.Spec{Width: job.width, Format: variant.FormatJPEG, Quality: 80}
		op := transform.Operation{Spec: spec, Source: info}
		var ours cell
		var theirs sharpResult
		var ourBytes int
		out := filepath.Join(t.TempDir(), "sharp.jpg")
		for range rounds {
			c, err := measure(conc, seconds*time.Second, int64(conc), func(int64) error {
				o, err := proc.Process(src, op)
				ourBytes = len(o.Data)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			ours.add(c)
			cmd := exec.Command(node, filepath.Join("testdata", "sharp-bench.js"), sharpDir, input, strconv.Itoa(job.width), "80", strconv.Itoa(conc), strconv.Itoa(seconds), out)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			raw, err := cmd.Output()
			if err != nil {
				t.Fatalf("sharp: %v\n%s", err, stderr.String())
			}
			var r sharpResult
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatalf("sharp printed %q: %v", raw, err)
			}
			theirs.Ops += r.Ops
			theirs.Wall += r.Wall
			theirs.CPU += r.CPU
			theirs.Bytes, theirs.Libvips = r.Bytes, r.Libvips
		}
		sharpRate := float64(theirs.Ops) / theirs.Wall
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.1f | %.0f | %.2f | %d / %d |\n", job.name, ours.rate(), ms(ours.cpu/time.Duration(ours.ops)),
			sharpRate, 1000*theirs.CPU/float64(theirs.Ops), ours.rate()/sharpRate, ourBytes, theirs.Bytes)
	}
	fmt.Println(b.String())
	if out := os.Getenv("IMGEDGE_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
