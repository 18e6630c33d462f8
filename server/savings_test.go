package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/store/local"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// TestSavingsReport runs images through the original prototype's fixed JPEG
// quality 90, fixed per-format defaults, and perceptual auto-quality, all at
// the original's size, and prints bytes, saving, score (SSIMULACRA2 against
// the original, the worst of its scored tiles) and encode time. `make savings` runs it on the
// shipped samples, plus the JPEGs of IMGEDGE_CORPUS (make savings
// CORPUS=dir) when set.
func TestSavingsReport(t *testing.T) {
	if os.Getenv("IMGEDGE_SAVINGS") == "" {
		t.Skip("set IMGEDGE_SAVINGS=1 (make savings)")
	}
	files, _ := filepath.Glob(filepath.Join("..", "deploy", "dev", "samples", "photos", "*.jpg"))
	if dir := os.Getenv("IMGEDGE_CORPUS"); dir != "" {
		corpus, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
		if len(corpus) == 0 {
			t.Fatalf("IMGEDGE_CORPUS=%s holds no .jpg files", dir)
		}
		files = append(files, corpus...)
	}
	cfg := config.Default()
	proc := newProcessor(cfg)
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := newService(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}), nil)
	if err != nil {
		t.Fatal(err)
	}
	type column struct {
		name string
		spec variant.Spec
	}
	columns := []column{
		{"prototype JPEG q90", variant.Spec{Format: variant.FormatJPEG, Quality: 90}},
		{"default JPEG q80", variant.Spec{Format: variant.FormatJPEG, Quality: 80}},
		{"default WebP q75", variant.Spec{Format: variant.FormatWebP, Quality: 75}},
		{"auto JPEG", variant.Spec{Format: variant.FormatJPEG, AutoQuality: true}},
		{"auto WebP", variant.Spec{Format: variant.FormatWebP, AutoQuality: true}},
		{"auto AVIF", variant.Spec{Format: variant.FormatAVIF, AutoQuality: true}},
	}
	type total struct {
		before, after int64
		scores        []float64
		cpu           time.Duration
	}
	totals := make([]total, len(columns))
	var b strings.Builder
	fmt.Fprintf(&b, "Same size as the original; SSIMULACRA2 against the original (the worst of up to %d tiles of %d px); auto targets %v; CPU time of one worker; a variant not smaller than the original is not served (kept: the original's bytes count).\n\n", 8, 256, cfg.AutoQuality.Targets)
	fmt.Fprint(&b, "| image | original |")
	for _, c := range columns {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	fmt.Fprint(&b, "\n|---|---:|")
	for range columns {
		fmt.Fprint(&b, "---:|")
	}
	fmt.Fprintln(&b)
	sort.Strings(files)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		info, err := proc.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := proc.Prepare(src, transform.Operation{Spec: variant.Spec{Format: variant.FormatPNG, Fit: variant.FitInside}, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| %s | %d B |", filepath.Base(f), len(src))
		for i, c := range columns {
			start := time.Now()
			out, chosen, err := svc.Transform(context.Background(), src, transform.Request{Override: c.spec})
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			score, err := ref.Score(out.Data)
			if err != nil {
				t.Fatal(err)
			}
			size := int64(len(out.Data))
			q := ""
			if c.spec.AutoQuality {
				q = fmt.Sprintf(" q%d,", chosen.Quality)
			}
			kept := ""
			if size >= int64(len(src)) {
				size, kept = int64(len(src)), " kept original,"
			}
			totals[i].before += int64(len(src))
			totals[i].after += size
			totals[i].scores = append(totals[i].scores, score)
			totals[i].cpu += took
			fmt.Fprintf(&b, " %d B (%.1f%%,%s%s %.1f, %.2f s) |", size, 100*(1-float64(size)/float64(len(src))), kept, q, score, took.Seconds())
		}
		fmt.Fprintln(&b)
	}
	fmt.Fprint(&b, "| **total** | |")
	for _, tot := range totals {
		fmt.Fprintf(&b, " %d B (**%.1f%%**) |", tot.after, 100*(1-float64(tot.after)/float64(tot.before)))
	}
	fmt.Fprint(&b, "\n| **SSIMULACRA2 mean / worst, CPU** | |")
	for _, tot := range totals {
		var sum float64
		worst := tot.scores[0]
		for _, s := range tot.scores {
			sum += s
			worst = min(worst, s)
		}
		fmt.Fprintf(&b, " %.1f / %.1f, %.1f s |", sum/float64(len(tot.scores)), worst, tot.cpu.Seconds())
	}
	fmt.Fprintln(&b)
	fmt.Println(b.String())
	if out := os.Getenv("IMGEDGE_SAVINGS_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
