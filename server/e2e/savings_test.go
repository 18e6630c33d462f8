//go:build report

// The savings report (make savings). Built only with -tags report.

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/quality"
	"github.com/imgedge/imgedge/server/internal/testimages"
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
	samples, _ := filepath.Glob(filepath.Join("..", "..", "deploy", "dev", "samples", "photos", "*.jpg"))
	files := slices.Clone(samples)
	if dir := os.Getenv("IMGEDGE_CORPUS"); dir != "" {
		corpus, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
		if len(corpus) == 0 {
			t.Fatalf("IMGEDGE_CORPUS=%s holds no .jpg files", dir)
		}
		files = append(files, corpus...)
	}
	cfg := config.Default()
	proc := app.NewProcessor(cfg)
	st := newLocalStore(t)
	// One job at a time, given the memory it needs: a same-size
	// auto-quality AVIF of a 24 MP photo needs ~780 MB, more than the
	// default budget (--max-memory 768 MiB, three quarters of it for
	// pixels), under which the service refuses it as too large.
	svc, err := app.NewService(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}), nil)
	if err != nil {
		t.Fatal(err)
	}
	// "best" runs as the service runs, within the default budget: it
	// compares the formats the budget affords.
	budgeted := app.PoolLimits(cfg)
	budgeted.Workers, budgeted.Queue = 1, 1
	svcBudgeted, err := app.NewService(cfg, st, proc, workpool.New(budgeted), nil)
	if err != nil {
		t.Fatal(err)
	}
	columns := []savingsColumn{
		{name: "prototype JPEG q90", spec: variant.Spec{Format: variant.FormatJPEG, Quality: 90}},
		{name: "default JPEG q80", spec: variant.Spec{Format: variant.FormatJPEG, Quality: 80}},
		{name: "default WebP q75", spec: variant.Spec{Format: variant.FormatWebP, Quality: 75}},
		{name: "default AVIF q50", spec: variant.Spec{Format: variant.FormatAVIF, Quality: 50}},
		{name: "auto JPEG", spec: variant.Spec{Format: variant.FormatJPEG, AutoQuality: true}},
		{name: "auto WebP", spec: variant.Spec{Format: variant.FormatWebP, AutoQuality: true}},
		{name: "auto AVIF", spec: variant.Spec{Format: variant.FormatAVIF, AutoQuality: true}},
		// What an AVIF-capable viewer gets from format best: every format
		// the default memory budget affords searched, the smallest that
		// meets its target served.
		{name: "best for an AVIF viewer", spec: variant.Spec{Format: variant.FormatBest}, viewer: variant.ClassAVIF, budgeted: true},
	}
	autoColumns := columns[4:7]
	type total struct {
		before, after int64
		savings       []float64 // per image
		scores        []float64
		cpu           time.Duration
	}
	totals := make([]total, len(columns))
	var b strings.Builder
	fmt.Fprintf(&b, "Same size as the original; SSIMULACRA2 against the original (the worst of up to %d tiles of %d px); auto targets %v; CPU: the process's CPU time for each variant (one at a time), given the memory it needs, but for `best`, which runs within the default memory budget; a variant not smaller than the original is not served: the original is (kept: its bytes count, and it scores 100).\n\n", 8, 256, cfg.AutoQuality.Targets)
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
	var srcs [][]byte
	var refs []transform.Prepared
	var names []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ref := reference(t, proc, src)
		srcs, refs, names = append(srcs, src), append(refs, ref), append(names, filepath.Base(f))
		fmt.Fprintf(&b, "| %s | %d B |", filepath.Base(f), len(src))
		for i, c := range columns {
			run := svc
			if c.budgeted {
				run = svcBudgeted
			}
			start := processCPU()
			out, chosen, err := run.Transform(context.Background(), src, transform.Request{Variant: variant.Request{Override: c.spec, Viewer: c.viewer}})
			took := processCPU() - start
			if err != nil {
				t.Fatal(err)
			}
			score, err := ref.Score(out.Data)
			if err != nil {
				t.Fatal(err)
			}
			size := int64(len(out.Data))
			q := ""
			switch {
			case c.spec.Format == variant.FormatBest:
				q = fmt.Sprintf(" %s q%d,", chosen.Format, chosen.Quality)
			case c.spec.AutoQuality:
				q = fmt.Sprintf(" q%d,", chosen.Quality)
			}
			kept := ""
			if size >= int64(len(src)) {
				// The original is served: that is what viewers see.
				kept = fmt.Sprintf(" kept original (the variant: %d B, %.1f),", size, score)
				size, score = int64(len(src)), 100
			}
			totals[i].before += int64(len(src))
			totals[i].after += size
			totals[i].savings = append(totals[i].savings, 1-float64(size)/float64(len(src)))
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
	fmt.Fprint(&b, "\n| **mean saving per image** | |")
	for _, tot := range totals {
		fmt.Fprintf(&b, " %.1f%% |", 100*mean(tot.savings))
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
	writeFixedMatch(t, &b, svc, srcs, refs, names, autoColumns, func(i int) (int64, float64, float64) {
		i += 4
		mean, worst := meanWorst(totals[i].scores)
		return totals[i].after, mean, worst
	})
	writeAutoCost(t, &b, svc, srcs)
	writeAnimationSavings(t, &b, svc, st, proc, samples)
	if dir := os.Getenv("IMGEDGE_CORPUS"); dir != "" {
		if encodes := referenceEncodes(t, filepath.Join(dir, "..", "quality-reference")); encodes != "" {
			writeEncoderComparison(t, &b, proc, encodes)
		}
	}
	fmt.Println(b.String())
	if out := os.Getenv("IMGEDGE_SAVINGS_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// reference prepares an image at its own size as the reference scores are
// measured against (its first frame, for an animation).
func reference(t *testing.T, proc transform.Processor, data []byte) transform.Prepared {
	t.Helper()
	info, err := proc.Probe(data)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := proc.Prepare(data, transform.Operation{Spec: variant.Spec{Format: variant.FormatPNG, Fit: variant.FitInside}, Source: info})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// writeAutoCost compares, at 720 px wide (the edge's typical job), the CPU
// of an auto-quality variant with one fixed-quality variant of the same
// format (the format's default), in total. Each job is run three times,
// the fixed and the auto one interleaved, and its least CPU counts: a
// shared machine only ever adds time, and a single run of a 0.1 s job
// moved the ratio by a tenth.
func writeAutoCost(t *testing.T, b *strings.Builder, svc *transform.Service, srcs [][]byte) {
	formats := []struct {
		f variant.Format
		q int
	}{{variant.FormatJPEG, 80}, {variant.FormatWebP, 75}, {variant.FormatAVIF, 50}}
	fmt.Fprintf(b, "\nAuto-quality's CPU at 720 px wide against one fixed-quality variant of the same format (the format's default quality), over the same %d images (CPU of the whole job: decode, resize, search, encode; the least of 3 interleaved runs of each):\n\n", len(srcs))
	fmt.Fprintln(b, "| format | fixed: CPU, bytes | auto: CPU, bytes | auto / fixed CPU |")
	fmt.Fprintln(b, "|---|---:|---:|---:|")
	for _, f := range formats {
		var cpu [2]time.Duration
		var size [2]int
		for _, src := range srcs {
			least := [2]time.Duration{math.MaxInt64, math.MaxInt64}
			var outBytes [2]int
			for range 3 {
				for i, spec := range []variant.Spec{{Width: 720, Format: f.f, Quality: f.q}, {Width: 720, Format: f.f, AutoQuality: true}} {
					start := processCPU()
					out, _, err := svc.Transform(context.Background(), src, transform.Request{Variant: variant.Request{Override: spec}})
					least[i] = min(least[i], processCPU()-start)
					if err != nil {
						t.Fatal(err)
					}
					outBytes[i] = len(out.Data)
				}
			}
			for i := range 2 {
				cpu[i] += least[i]
				size[i] += outBytes[i]
			}
		}
		fmt.Fprintf(b, "| %s | %.2f s, %d B | %.2f s, %d B | %.1f× |\n", f.f, cpu[0].Seconds(), size[0], cpu[1].Seconds(), size[1], cpu[1].Seconds()/cpu[0].Seconds())
	}
}

// savingsColumn is one way of encoding every image.
type savingsColumn struct {
	name     string
	spec     variant.Spec
	viewer   variant.Class // what the viewer accepts, for FormatBest
	budgeted bool          // run within the default memory budget
}

// fixedStats are a fixed quality's totals over the images, and what each
// image got (the original where the variant was not smaller).
type fixedStats struct {
	q           int
	bytes       int64
	mean, worst float64
	perImage    []imageResult
}

// imageResult is what one image was served at one setting.
type imageResult struct {
	bytes int64
	score float64
}

func meanWorst(scores []float64) (mean, worst float64) {
	worst = scores[0]
	for _, s := range scores {
		mean += s
		worst = min(worst, s)
	}
	return mean / float64(len(scores)), worst
}

// writeFixedMatch compares each auto-quality column with the best single
// fixed quality of its format: the lowest that reaches auto's mean score,
// and the lowest that reaches auto's worst score (on the same images).
func writeFixedMatch(t *testing.T, b *strings.Builder, svc *transform.Service, srcs [][]byte, refs []transform.Prepared, imageNames []string,
	autos []savingsColumn, auto func(i int) (bytes int64, mean, worst float64)) {
	fixedAt := func(f variant.Format, q int) fixedStats {
		st := fixedStats{q: q}
		var scores []float64
		for i, src := range srcs {
			out, _, err := svc.Transform(context.Background(), src, transform.Request{Variant: variant.Request{Override: variant.Spec{Format: f, Quality: q}}})
			if err != nil {
				t.Fatal(err)
			}
			score, err := refs[i].Score(out.Data)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Data) >= len(src) {
				out.Data, score = src, 100 // the original is served
			}
			st.bytes += int64(len(out.Data))
			scores = append(scores, score)
			st.perImage = append(st.perImage, imageResult{int64(len(out.Data)), score})
		}
		st.mean, st.worst = meanWorst(scores)
		return st
	}
	// The lowest quality whose pick reaches target: scores rise with quality.
	match := func(f variant.Format, target float64, pick func(fixedStats) float64) fixedStats {
		lo, hi := 30, 95
		best := fixedAt(f, hi)
		for lo <= hi {
			q := (lo + hi) / 2
			if st := fixedAt(f, q); pick(st) >= target {
				best, hi = st, q-1
			} else {
				lo = q + 1
			}
		}
		return best
	}
	fmt.Fprint(b, "\nAuto-quality against the best single fixed quality of its format on the same images (bytes in total, SSIMULACRA2 mean / worst):\n\n")
	fmt.Fprint(b, "| | auto | fixed q matched to auto's mean | fixed q matched to auto's worst |\n|---|---:|---:|---:|\n")
	var matched []fixedStats
	var headers []string
	for i, c := range autos {
		bytes, mean, worst := auto(i)
		byMean := match(c.spec.Format, mean, func(s fixedStats) float64 { return s.mean })
		byWorst := match(c.spec.Format, worst, func(s fixedStats) float64 { return s.worst })
		cell := func(s fixedStats) string {
			return fmt.Sprintf("q%d: %d B, %.1f / %.1f (auto %+.1f%% bytes)", s.q, s.bytes, s.mean, s.worst, 100*(float64(bytes)/float64(s.bytes)-1))
		}
		fmt.Fprintf(b, "| %s | %d B, %.1f / %.1f | %s | %s |\n", c.name, bytes, mean, worst, cell(byMean), cell(byWorst))
		matched = append(matched, byMean, byWorst)
		headers = append(headers, fmt.Sprintf("%s q%d (mean)", c.spec.Format, byMean.q), fmt.Sprintf("%s q%d (worst)", c.spec.Format, byWorst.q))
	}
	fmt.Fprint(b, "\nThose fixed qualities per image (bytes, SSIMULACRA2; the original where the variant was not smaller):\n\n| image |")
	for _, n := range headers {
		fmt.Fprintf(b, " %s |", n)
	}
	fmt.Fprint(b, "\n|---|")
	for range headers {
		fmt.Fprint(b, "---:|")
	}
	fmt.Fprintln(b)
	for i, name := range imageNames {
		fmt.Fprintf(b, "| %s |", name)
		for _, m := range matched {
			fmt.Fprintf(b, " %d B, %.1f |", m.perImage[i].bytes, m.perImage[i].score)
		}
		fmt.Fprintln(b)
	}
}

// referenceEncodes rebuilds the reference encodes of quality-reference
// (refDir) into a temporary directory, or returns "" without them.
func referenceEncodes(t *testing.T, refDir string) string {
	if _, err := os.Stat(filepath.Join(refDir, "make-encodes.sh")); err != nil {
		return ""
	}
	out := t.TempDir()
	script := exec.Command("bash", filepath.Join(refDir, "make-encodes.sh"), filepath.Join(refDir, "..", "corpus"), out)
	if msg, err := script.CombinedOutput(); err != nil {
		t.Fatalf("make-encodes.sh: %v\n%s", err, msg)
	}
	return out
}

// writeEncoderComparison compares the service's JPEG encoder with the one
// the project started on — Debian's libvips 8.14 with libjpeg-turbo, as the
// reference encodes in quality-reference were made — at equal SSIMULACRA2,
// on the reference images (each photo of the corpus at most 1024 px wide).
// Both encoders' outputs are decoded by the same tool (Debian's vips) and
// scored against the same reference PNG; for every Debian encode, the
// service's bytes at the same score are interpolated (log-linearly) from
// its own encodes at q30–95.
func writeEncoderComparison(t *testing.T, b *strings.Builder, proc transform.Processor, out string) {
	type point struct{ bytes, score float64 }
	curve := func(ref *quality.SSIMULACRA2Reference, files []string, pngOf func(string) string) []point {
		var pts []point
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ref.Score(testimages.DecodeFile(t, pngOf(f)))
			if err != nil {
				t.Fatal(err)
			}
			pts = append(pts, point{float64(fi.Size()), s})
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i].score < pts[j].score })
		return pts
	}
	// bytesAt interpolates log(bytes) at score on a curve sorted by score.
	bytesAt := func(c []point, score float64) (float64, bool) {
		for i := 1; i < len(c); i++ {
			if c[i-1].score <= score && score <= c[i].score && c[i].score > c[i-1].score {
				f := (score - c[i-1].score) / (c[i].score - c[i-1].score)
				return math.Exp(math.Log(c[i-1].bytes) + f*(math.Log(c[i].bytes)-math.Log(c[i-1].bytes))), true
			}
		}
		return 0, false
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "*"))
	sort.Strings(dirs)
	fmt.Fprint(b, "\nThe JPEG encoder against Debian's libvips 8.14 (libjpeg-turbo, optimised Huffman tables), at equal SSIMULACRA2 (the reference images, ≤ 1024 px; both decoded by Debian's vips): the service's bytes at the score each Debian encode reaches, as a saving.\n\n")
	fmt.Fprint(b, "| image | Debian q50 | Debian q60 | Debian q70 | Debian q80 | Debian q90 | mean, scores 55–85 | at score 70 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var all, at70 []float64
	for _, d := range dirs {
		refImg := testimages.DecodeFile(t, filepath.Join(d, "ref.png"))
		ref, err := quality.NewSSIMULACRA2Reference(refImg)
		if err != nil {
			t.Fatal(err)
		}
		// The pixels alone: the reference PNG may still carry the photo's
		// EXIF orientation, which the service would apply again.
		var buf bytes.Buffer
		if err := png.Encode(&buf, refImg); err != nil {
			t.Fatal(err)
		}
		refBytes := buf.Bytes()
		info, err := proc.Probe(refBytes)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		// Every fifth quality, and every other one near the top, where
		// chroma goes from 4:2:0 to full resolution (q95).
		for _, q := range []int{30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 87, 89, 91, 93, 94, 95} {
			o, err := proc.Process(refBytes, transform.Operation{Spec: variant.Spec{Format: variant.FormatJPEG, Quality: q}, Source: info})
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(d, fmt.Sprintf("ours-q%d.jpg", q))
			if err := os.WriteFile(f, o.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command("vips", "copy", f, f+".png[compression=1]").CombinedOutput(); err != nil {
				t.Fatalf("vips copy: %v\n%s", err, msg)
			}
			ours = append(ours, f)
		}
		debianFiles, _ := filepath.Glob(filepath.Join(d, "jpeg-q*.jpg"))
		withPNG := func(f string) string { return f + ".png" }
		mine := curve(ref, ours, withPNG)
		fmt.Fprintf(b, "| %s |", filepath.Base(d))
		var savings []float64
		for _, q := range []int{50, 60, 70, 80, 90} {
			f := filepath.Join(d, fmt.Sprintf("jpeg-q%d.jpg", q))
			cell := " — |"
			if _, err := os.Stat(f); err == nil {
				p := curve(ref, []string{f}, withPNG)[0]
				if ob, ok := bytesAt(mine, p.score); ok {
					cell = fmt.Sprintf(" %.1f%% (at %.1f) |", 100*(1-ob/p.bytes), p.score)
				}
			}
			fmt.Fprint(b, cell)
		}
		theirs := curve(ref, debianFiles, withPNG)
		for _, p := range theirs {
			if ob, ok := bytesAt(mine, p.score); ok && p.score >= 55 && p.score <= 85 {
				savings = append(savings, 1-ob/p.bytes)
			}
		}
		all = append(all, savings...)
		fmt.Fprintf(b, " %.1f%% |", 100*mean(savings))
		// At the auto-quality target, both curves interpolated.
		ob, ok1 := bytesAt(mine, 70)
		tb, ok2 := bytesAt(theirs, 70)
		if ok1 && ok2 {
			at70 = append(at70, 1-ob/tb)
			fmt.Fprintf(b, " %.1f%% |\n", 100*(1-ob/tb))
		} else {
			fmt.Fprint(b, " — |\n")
		}
	}
	fmt.Fprintf(b, "| **all** | | | | | | **%.1f%%** (%d points) | **%.1f%%** |\n", 100*mean(all), len(all), 100*mean(at70))
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
