//go:build report

// The peer benchmark (make bench-peers): the engine against sharp, same run.
// Built only with -tags report.

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
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

// add sums r's rounds into s.
func (s *sharpResult) add(r sharpResult) {
	s.Ops += r.Ops
	s.Wall += r.Wall
	s.CPU += r.CPU
	s.Bytes, s.Libvips = r.Bytes, r.Libvips
}

// rate is images per second of wall time.
func (s sharpResult) rate() float64 { return float64(s.Ops) / s.Wall }

// cpuMS is the CPU per image, in milliseconds.
func (s sharpResult) cpuMS() float64 { return 1000 * s.CPU / float64(s.Ops) }

// TestPeerBenchmark measures the service's engine (the imaging package,
// in process, libvips' cache off) and the service itself (a cold
// EnsureVariant through gRPC on the local store: fetch, transform, store)
// against sharp — the strongest peer that
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
	env := newBenchEnv(t)
	proc := env.proc
	info, err := proc.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	conc := runtime.NumCPU()
	const rounds, seconds = 3, 4
	// Copies of the source for sharp with I/O: more than a run reads its
	// way through, so each is cold in the CPU's caches, as the service's
	// fresh originals are.
	copies := t.TempDir()
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(copies, fmt.Sprintf("%03d.jpg", i)), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// runSharp runs one cell of sharp: on one buffer, or with copiesDir,
	// doing the service's I/O.
	runSharp := func(width int, out, copiesDir string) sharpResult {
		args := []string{filepath.Join("testdata", "sharp-bench.js"), sharpDir, input, strconv.Itoa(width), "80", strconv.Itoa(conc), strconv.Itoa(seconds), out}
		if copiesDir != "" {
			args = append(args, copiesDir)
		}
		cmd := exec.Command(node, args...)
		// sharp under the malloc arena limit the service sets itself.
		cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=2")
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
		return r
	}
	jobs := []struct {
		name  string
		width int
	}{{"2725×2225 → 720 px JPEG q80", 720}, {"2725×2225 same-size JPEG q80", 0}}
	var b strings.Builder
	fmt.Fprintf(&b, "libvips %s (imgedge) vs sharp, concurrency %d, %d interleaved rounds of %d s per cell; CPU per image includes everything each process did (the service's: its gRPC server and the caller's client, both in the measuring process).\n\n", imaging.Version(), conc, rounds, seconds)
	fmt.Fprint(&b, "| job | engine img/s | CPU ms/img | service img/s | CPU ms/img | sharp img/s | CPU ms/img | engine / sharp | service / sharp | output bytes (imgedge / sharp) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var withIO strings.Builder
	fmt.Fprint(&withIO, "| job | service img/s | CPU ms/img | sharp with I/O img/s | CPU ms/img | service / sharp with I/O |\n|---|---:|---:|---:|---:|---:|\n")
	for ji, job := range jobs {
		spec := variant.Spec{Width: job.width, Format: variant.FormatJPEG, Quality: 80}
		op := transform.Operation{Spec: spec, Source: info}
		var engine, service cell
		var theirs, theirsIO sharpResult
		var ourBytes int
		out := filepath.Join(t.TempDir(), "sharp.jpg")
		cold := peerColdOp(t, env, src, ji, spec)
		for range rounds {
			c, err := measure(conc, seconds*time.Second, int64(conc), func(int64) error {
				o, err := proc.Process(src, op)
				ourBytes = len(o.Data)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			engine.add(c)
			c, err = measure(conc, seconds*time.Second, int64(conc), cold)
			if err != nil {
				t.Fatal(err)
			}
			service.add(c)
			theirs.add(runSharp(job.width, out, ""))
			theirsIO.add(runSharp(job.width, out, copies))
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.1f | %.0f | %.1f | %.0f | %.2f | %.2f | %d / %d |\n", job.name,
			engine.rate(), ms(engine.cpu/time.Duration(engine.ops)), service.rate(), ms(service.cpu/time.Duration(service.ops)),
			theirs.rate(), theirs.cpuMS(), engine.rate()/theirs.rate(), service.rate()/theirs.rate(), ourBytes, theirs.Bytes)
		fmt.Fprintf(&withIO, "| %s | %.1f | %.0f | %.1f | %.0f | %.2f |\n", job.name,
			service.rate(), ms(service.cpu/time.Duration(service.ops)), theirsIO.rate(), theirsIO.cpuMS(), service.rate()/theirsIO.rate())
	}
	fmt.Fprintf(&b, "\nThe service against sharp doing the service's I/O in the same rounds (each image read from a file into a fresh buffer, its output written to a new file):\n\n%s", withIO.String())
	fmt.Println(b.String())
	if out := os.Getenv("IMGEDGE_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// peerColdOp is a cold EnsureVariant of spec on the local store: each call
// asks for a fresh original (copies uploaded up front, enough for the
// fastest rounds), so every call fetches, transforms and stores.
func peerColdOp(t *testing.T, env *benchEnv, src []byte, job int, spec variant.Spec) func(int64) error {
	const copies = 1500
	for i := range copies {
		env.putLoc(fmt.Sprintf("peer/%d/%04d.jpg", job, i), src)
	}
	wire := variant.Request{Override: spec}.Proto()
	var next atomic.Int64
	return func(int64) error {
		n := next.Add(1) - 1
		if n >= copies {
			return fmt.Errorf("out of fresh originals after %d calls", n)
		}
		resp, err := env.local.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("peer/%d/%04d.jpg", job, n), Variant: wire})
		if err == nil && resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED {
			return fmt.Errorf("cold call %d: %v", n, resp.GetOutcome())
		}
		return err
	}
}
