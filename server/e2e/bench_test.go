//go:build report

// The benchmark report (make bench): every service path against in-process
// libvips. Built only with -tags report, so the default test binary stays lean.

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imgedge/imgedge/client"
	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/imaging"
	"github.com/imgedge/imgedge/server/internal/s3test"
	"github.com/imgedge/imgedge/server/internal/store/local"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// benchCase is one operation measured on every path.
type benchCase struct {
	name   string
	source func() []byte
	spec   variant.Spec // resolved
	wire   *imgedgev1.VariantSpec
}

func corpusOr(name string, gen func() []byte) func() []byte {
	return sync.OnceValue(func() []byte {
		if data, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", name)); err == nil {
			return data
		}
		return gen()
	})
}

var (
	photo2725 = corpusOr("sharp_2569067123_aca715a2ee_o.jpg", func() []byte { return testimages.JPEG(2725, 2225, 90) })
	phone12mp = corpusOr("bimg_test_exif_full.jpg", func() []byte { return testimages.WithOrientation(testimages.JPEG(4032, 3024, 90), 6) })
	photo24mp = corpusOr("bimg_vertical.jpg", func() []byte { return testimages.JPEG(4000, 6000, 90) })
)

func benchCases() []benchCase {
	w720 := proto.Uint32(720)
	mk := func(name string, src func() []byte, w *uint32, f imgedgev1.Format, q uint32) benchCase {
		spec := variant.Spec{Format: variant.Format(f), Quality: int(q)}
		if w != nil {
			spec.Width = int(*w)
		}
		return benchCase{
			name: name, source: src, spec: spec.Resolve(variant.ClassJPEG, variant.Defaults{})[0],
			wire: &imgedgev1.VariantSpec{Width: w, Format: f, Quality: proto.Uint32(q)},
		}
	}
	return []benchCase{
		mk("2725×2225 → 720 px JPEG q80", photo2725, w720, imgedgev1.Format_FORMAT_JPEG, 80),
		mk("2725×2225 → 720 px WebP q75", photo2725, w720, imgedgev1.Format_FORMAT_WEBP, 75),
		mk("2725×2225 same size JPEG q90", photo2725, nil, imgedgev1.Format_FORMAT_JPEG, 90),
		mk("2725×2225 → 720 px AVIF q50", photo2725, w720, imgedgev1.Format_FORMAT_AVIF, 50),
		mk("12 MP EXIF-6 → 720 px JPEG q80", phone12mp, w720, imgedgev1.Format_FORMAT_JPEG, 80),
		mk("24 MP → 720 px JPEG q80", photo24mp, w720, imgedgev1.Format_FORMAT_JPEG, 80),
	}
}

// cell is one measurement: a path, a case and a concurrency.
type cell struct {
	ops       int64
	wall      time.Duration
	cpu       time.Duration
	latencies []time.Duration
	peakRSS   int64
	outBytes  int
	outW      int
	outH      int
}

func (c *cell) add(o cell) {
	c.ops += o.ops
	c.wall += o.wall
	c.cpu += o.cpu
	c.latencies = append(c.latencies, o.latencies...)
	c.peakRSS = max(c.peakRSS, o.peakRSS)
	if o.outBytes > 0 {
		c.outBytes, c.outW, c.outH = o.outBytes, o.outW, o.outH
	}
}

func (c cell) rate() float64 { return float64(c.ops) / c.wall.Seconds() }

func (c cell) percentile(p float64) time.Duration {
	if len(c.latencies) == 0 {
		return 0
	}
	s := slices.Clone(c.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS makes VmHWM start again from the current RSS.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func selfPeakRSS() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(rest, &kb)
			return kb << 10
		}
	}
	return 0
}

// measure runs op from conc goroutines for about d, at least minOps times.
func measure(conc int, d time.Duration, minOps int64, op func(i int64) error) (cell, error) {
	runtime.GC()
	resetPeakRSS()
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	start, cpu0 := time.Now(), processCPU()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			for {
				i := next.Add(1) - 1
				if i >= minOps && time.Now().After(deadline) {
					break
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return cell{ops: int64(len(lat)), wall: time.Since(start), cpu: processCPU() - cpu0, latencies: lat, peakRSS: selfPeakRSS()}, firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// benchEnv is a real server per store, with a client each.
type benchEnv struct {
	proc  *imaging.Processor
	local *client.Client
	s3    *client.Client // nil without versitygw
	// s3EveryHEAD serves the same store with --known-variant-ttl 0: every
	// hit HEADs its variant too.
	s3EveryHEAD *client.Client
	putS3       func(key string, data []byte)
	putLoc      func(key string, data []byte)
}

func newBenchEnv(t *testing.T) *benchEnv {
	cfg := config.Default()
	cfg.Workers, cfg.Queue, cfg.MinSaving = runtime.NumCPU(), 16*runtime.NumCPU(), 0
	cfg.MaxSourcePixels = 30_000_000
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	app.TuneGC(cfg, os.LookupEnv) // as the server binary does
	env := &benchEnv{proc: app.NewProcessor(cfg)}
	start := func(cfg config.Config, st transform.Store) *client.Client {
		srv, err := app.New(cfg, st, env.proc, logger, nil)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveOn(t, srv.GRPC)
		c, err := client.New(addr, client.WithInsecure(), client.WithDefaultDeadline(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ls, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ls.CreateBucket(bucket)
	env.putLoc = func(k string, d []byte) { putVia(t, ls)(k, d) }
	env.local = start(cfg, ls)
	if os.Getenv("IMGEDGE_VERSITYGW") != "" || fileExists(filepath.Join("..", "..", ".bin", "versitygw")) {
		srv := s3test.Start(t)
		srv.CreateBucket(t, bucket)
		st := s3store.NewFromClient(srv.Client(s3store.ServiceOptions))
		env.putS3 = func(k string, d []byte) { putVia(t, st)(k, d) }
		env.s3 = start(cfg, st)
		everyHEAD := cfg
		everyHEAD.KnownVariantTTL = 0
		env.s3EveryHEAD = start(everyHEAD, st)
	}
	return env
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestBenchmarkReport measures every service path against in-process
// libvips, interleaved round by round so machine noise cancels out, and
// prints the table BENCHMARKS.md holds. Run it with `make bench`.
func TestBenchmarkReport(t *testing.T) {
	if os.Getenv("IMGEDGE_BENCH") == "" {
		t.Skip("set IMGEDGE_BENCH=1 (make bench)")
	}
	cores := runtime.NumCPU()
	rounds := 2
	cellTime := 1500 * time.Millisecond
	env := newBenchEnv(t)
	cases := benchCases()

	type key struct {
		path, cas string
		conc      int
	}
	results := map[key]*cell{}
	record := func(k key, c cell) {
		if results[k] == nil {
			results[k] = &cell{}
		}
		results[k].add(c)
	}
	coldSeq := map[string]*atomic.Int64{}
	// Upload enough copies for the cold runs: each cold call needs a fresh original.
	const copies = 400
	for ci, bc := range cases {
		src := bc.source()
		for _, put := range []func(string, []byte){env.putLoc, env.putS3} {
			if put == nil {
				continue
			}
			for i := range copies {
				put(fmt.Sprintf("cold/%d/%03d.jpg", ci, i), src)
			}
		}
		coldSeq[fmt.Sprint("local", ci)] = &atomic.Int64{}
		coldSeq[fmt.Sprint("s3", ci)] = &atomic.Int64{}
		if ci > 0 {
			continue // the hot rows ask for the first case's variant
		}
		for k := range hotKeys {
			env.putLoc(hotKey(ci, k), src)
			if env.putS3 != nil {
				env.putS3(hotKey(ci, k), src)
			}
		}
	}
	ctx := context.Background()
	for _, c := range []*client.Client{env.local, env.s3} {
		if c != nil {
			warmHot(ctx, t, c, cases[0], 0)
		}
	}
	// What each case's output is, from one run outside the timed cells.
	for _, bc := range cases {
		src := bc.source()
		info, err := env.proc.Probe(src)
		if err != nil {
			t.Fatal(err)
		}
		out, err := env.proc.Process(src, transform.Operation{Spec: bc.spec, Source: info})
		if err != nil {
			t.Fatal(err)
		}
		results[key{"out", bc.name, 0}] = &cell{outBytes: len(out.Data), outW: out.Width, outH: out.Height}
	}
	for range rounds {
		for ci, bc := range cases {
			src := bc.source()
			info, err := env.proc.Probe(src)
			if err != nil {
				t.Fatal(err)
			}
			concs := []int{cores}
			if ci == 0 {
				concs = []int{1, cores, 4 * cores}
			}
			if ci == len(cases)-1 {
				concs = []int{cores, 4 * cores}
			}
			for _, conc := range concs {
				paths := []struct {
					name string
					op   func(i int64) error
				}{
					{"in-process libvips", func(int64) error {
						_, err := env.proc.Process(src, transform.Operation{Spec: bc.spec, Source: info})
						return err
					}},
					{"Transform (gRPC)", func(int64) error {
						_, err := env.local.Transform(ctx, bc.wire, bytes.NewReader(src), io.Discard)
						return err
					}},
					{"EnsureVariant cold, local", coldOp(ctx, env.local, bc, ci, "local", coldSeq)},
				}
				if env.s3 != nil {
					paths = append(paths, struct {
						name string
						op   func(i int64) error
					}{"EnsureVariant cold, versitygw", coldOp(ctx, env.s3, bc, ci, "s3", coldSeq)})
				}
				if ci == 0 {
					for _, hot := range []struct {
						store string
						c     *client.Client
					}{{"local", env.local}, {"versitygw", env.s3}, {everyHEAD, env.s3EveryHEAD}} {
						if hot.c == nil {
							continue
						}
						for _, keys := range []int{1, hotKeys} {
							if hot.store == everyHEAD && keys == 1 {
								continue
							}
							paths = append(paths, struct {
								name string
								op   func(i int64) error
							}{hotPath(hot.store, keys), hotOp(ctx, hot.c, bc, ci, keys)})
						}
					}
				}
				for _, p := range paths {
					d := cellTime
					if strings.Contains(p.name, "hot") {
						d = cellTime / 2
					}
					c, err := measure(conc, d, int64(conc), p.op)
					if err != nil {
						t.Fatalf("%s / %s / %d: %v", p.name, bc.name, conc, err)
					}
					record(key{p.name, bc.name, conc}, c)
				}
			}
		}
	}

	// The table.
	var b strings.Builder
	fmt.Fprintf(&b, "libvips %s, Go %s, %d cores, %d rounds interleaved, ~%v per cell per round\n\n", imaging.Version(), runtime.Version(), cores, rounds, cellTime)
	fmt.Fprintln(&b, "| operation | path | conc | img/s | ratio to in-process | p50 ms | p99 ms | CPU ms/img | peak RSS MiB | output |")
	fmt.Fprintln(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, bc := range cases {
		out := results[key{"out", bc.name, 0}]
		for _, conc := range []int{1, cores, 4 * cores} {
			base := results[key{"in-process libvips", bc.name, conc}]
			for _, p := range []string{"in-process libvips", "Transform (gRPC)", "EnsureVariant cold, local", "EnsureVariant cold, versitygw",
				hotPath("local", 1), hotPath("local", hotKeys), hotPath("versitygw", 1), hotPath("versitygw", hotKeys), hotPath(everyHEAD, hotKeys)} {
				c := results[key{p, bc.name, conc}]
				if c == nil || c.ops == 0 {
					continue
				}
				ratio := "—"
				if base != nil && base.ops > 0 && !strings.Contains(p, "hot") {
					ratio = fmt.Sprintf("%.2f", c.rate()/base.rate())
				}
				output := ""
				if out != nil && !strings.Contains(p, "hot") {
					output = fmt.Sprintf("%d×%d, %d B", out.outW, out.outH, out.outBytes)
				}
				fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %s | %.1f | %.1f | %.1f | %d | %s |\n", bc.name, p, conc, c.rate(), ratio,
					ms(c.percentile(0.5)), ms(c.percentile(0.99)), ms(c.cpu/time.Duration(c.ops)), c.peakRSS>>20, output)
			}
		}
	}
	fmt.Println(b.String())
	if out := os.Getenv("IMGEDGE_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func coldOp(ctx context.Context, c *client.Client, bc benchCase, ci int, store string, seq map[string]*atomic.Int64) func(int64) error {
	return func(int64) error {
		n := seq[fmt.Sprint(store, ci)].Add(1) - 1
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("cold/%d/%03d.jpg", ci, n%400), Variant: bc.wire}
		if n >= 400 {
			// Out of fresh originals: vary the width instead, still a full build.
			req.Variant = proto.CloneOf(bc.wire)
			req.Variant.Width = proto.Uint32(700 - uint32(n/400))
		}
		resp, err := c.EnsureVariant(ctx, req)
		if err == nil && resp.GetOutcome() == imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED {
			return fmt.Errorf("cold call %d found an existing variant", n)
		}
		return err
	}
}

// hotKeys is how many originals the hot rows spread their calls over: one
// key shows a single hot image, whose concurrent lookups are shared; many
// show a working set of hot images, each call its own round of HEADs.
const hotKeys = 64

// everyHEAD names the hot rows of a server that remembers no lookup.
const everyHEAD = "versitygw, --known-variant-ttl 0"

func hotKey(ci, k int) string { return fmt.Sprintf("hot/%d/%02d.jpg", ci, k) }

func hotPath(store string, keys int) string {
	if keys == 1 {
		return "EnsureVariant hot, " + store + ", one key"
	}
	return fmt.Sprintf("EnsureVariant hot, %s, %d keys", store, keys)
}

// hotOp asks, call after call, for variants that exist, round-robin over
// the first keys originals (warmHot built them).
func hotOp(ctx context.Context, c *client.Client, bc benchCase, ci, keys int) func(int64) error {
	reqs := make([]*imgedgev1.EnsureVariantRequest, keys)
	for k := range reqs {
		reqs[k] = &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: hotKey(ci, k), Variant: bc.wire}
	}
	return func(i int64) error {
		resp, err := c.EnsureVariant(ctx, reqs[i%int64(keys)])
		if err == nil && resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED {
			return fmt.Errorf("hot call %d: %v", i, resp.GetOutcome())
		}
		return err
	}
}

// warmHot builds the variants the hot rows ask for.
func warmHot(ctx context.Context, t testing.TB, c *client.Client, bc benchCase, ci int) {
	for k := range hotKeys {
		req := &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: hotKey(ci, k), Variant: bc.wire}
		if _, err := c.EnsureVariant(ctx, req); err != nil {
			t.Fatalf("building %s: %v", req.Key, err)
		}
	}
}

// The go test -bench entry points, for quick comparisons with benchstat.

func BenchmarkInProcessJPEG720(b *testing.B) {
	proc := app.NewProcessor(config.Default())
	bc := benchCases()[0]
	src := bc.source()
	info, _ := proc.Probe(src)
	for b.Loop() {
		if _, err := proc.Process(src, transform.Operation{Spec: bc.spec, Source: info}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTransformGRPCJPEG720(b *testing.B) {
	c := benchServer(b, localBenchStore(b))
	bc := benchCases()[0]
	src := bc.source()
	for b.Loop() {
		if _, err := c.Transform(context.Background(), bc.wire, bytes.NewReader(src), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// localBenchStore is a local store with the benchmark's bucket.
func localBenchStore(b *testing.B) transform.Store {
	st, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	st.CreateBucket(bucket)
	return st
}

// benchServer serves the default configuration on st over loopback until
// the benchmark ends, and returns a client.
func benchServer(b *testing.B, st transform.Store) *client.Client {
	cfg := config.Default()
	app.TuneGC(cfg, os.LookupEnv)
	srv, err := app.New(cfg, st, app.NewProcessor(cfg), slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.GRPC.Serve(lis)
	b.Cleanup(srv.GRPC.Stop)
	c, err := client.New(lis.Addr().String(), client.WithInsecure())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkEnsureVariantHotLocal is the hot row of the report at c = 4 ×
// cores: every call finds its variant, on the local store, over 64 keys.
func BenchmarkEnsureVariantHotLocal(b *testing.B) {
	benchmarkHot(b, localBenchStore(b))
}

// BenchmarkEnsureVariantHotVersitygw is its twin on versitygw (which runs
// on the same cores).
func BenchmarkEnsureVariantHotVersitygw(b *testing.B) {
	srv := s3test.Start(b)
	srv.CreateBucket(b, bucket)
	benchmarkHot(b, s3store.NewFromClient(srv.Client(s3store.ServiceOptions)))
}

func benchmarkHot(b *testing.B, st transform.Store) {
	c := benchServer(b, st)
	bc := benchCases()[0]
	src := bc.source()
	for k := range hotKeys {
		putVia(b, st)(hotKey(0, k), src)
	}
	ctx := context.Background()
	warmHot(ctx, b, c, bc, 0)
	hit := hotOp(ctx, c, bc, 0, hotKeys)
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if err := hit(seq.Add(1)); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	hits := cell{latencies: lat}
	b.ReportMetric(ms(hits.percentile(0.5)), "p50-ms")
	b.ReportMetric(ms(hits.percentile(0.99)), "p99-ms")
}
