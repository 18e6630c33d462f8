package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

var bigJPEG = sync.OnceValue(func() []byte { return testimages.JPEG(3000, 2000, 95) })

func TestFloodIsShedFast(t *testing.T) {
	st := newLocalStore(t)
	const calls = 16
	for i := range calls {
		putVia(t, st)(fmt.Sprintf("flood/%02d.jpg", i), bigJPEG())
	}
	h := startServer(t, st, func(c *config.Config) { c.Workers, c.Queue = 1, 2 })

	stopHealth := make(chan struct{})
	var healthOK, healthFailed atomic.Int64
	go func() {
		for {
			select {
			case <-stopHealth:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
				healthFailed.Add(1)
			} else {
				healthOK.Add(1)
			}
		}
	}()

	type result struct {
		err  error
		done time.Time
		resp *imgedgev1.EnsureVariantResponse
	}
	results := make([]result, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			resp, err := h.client.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("flood/%02d.jpg", i)})
			results[i] = result{err, time.Now(), resp}
		})
	}
	wg.Wait()
	close(stopHealth)

	var accepted, rejected int
	var lastAccepted, lastRejected time.Time
	for _, r := range results {
		switch status.Code(r.err) {
		case codes.OK:
			accepted++
			lastAccepted = maxTime(lastAccepted, r.done)
			if r.resp.GetOutcome() != imgedgev1.Outcome_OUTCOME_CREATED {
				t.Errorf("accepted call: %v", r.resp)
			}
			data, _, err := st.Get(context.Background(), bucket, r.resp.GetKey(), 0)
			if img, _, derr := testimages.Decode(data); err != nil || derr != nil || img.Bounds().Dx() != 3000 {
				t.Errorf("variant %s does not decode: %v %v", r.resp.GetKey(), err, derr)
			}
		case codes.ResourceExhausted:
			rejected++
			lastRejected = maxTime(lastRejected, r.done)
			if !hasRetryInfo(r.err) {
				t.Errorf("rejection without a retry hint: %v", r.err)
			}
		default:
			t.Errorf("unexpected: %v", r.err)
		}
	}
	if rejected == 0 || accepted < 3 {
		t.Fatalf("%d accepted, %d rejected: want the excess over 1 worker + 2 queued refused", accepted, rejected)
	}
	if !lastRejected.Before(lastAccepted) {
		t.Errorf("rejections were not fast: the last came after the accepted work finished")
	}
	if healthFailed.Load() > 0 || healthOK.Load() == 0 {
		t.Errorf("health during the flood: %d ok, %d failed", healthOK.Load(), healthFailed.Load())
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func hasRetryInfo(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return true
		}
	}
	return false
}

func TestMetricsAddUp(t *testing.T) {
	st := newLocalStore(t)
	photo, noise := testimages.JPEG(800, 600, 95), testimages.NoiseJPEG(300, 200, 40)
	putVia(t, st)("photo.jpg", photo)
	putVia(t, st)("noise.jpg", noise)
	h := startServer(t, st, nil)

	first := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg"})
	ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg"})
	ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "noise.jpg"})
	h.client.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "missing.jpg"})

	rec := httptest.NewRecorder()
	h.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := parseMetrics(t, rec.Body)
	want := map[string]float64{
		`imgedge_variants_total{outcome="created"}`:                                                            1,
		`imgedge_variants_total{outcome="already_existed"}`:                                                    1,
		`imgedge_variants_total{outcome="original_is_smaller"}`:                                                1,
		`imgedge_original_bytes_total`:                                                                         float64(2*len(photo) + len(noise)),
		`imgedge_served_bytes_total`:                                                                           float64(2*first.GetSize() + int64(len(noise))),
		`imgedge_rpc_requests_total{code="OK",method="/imgedge.v1.ImageTransformService/EnsureVariant"}`:       3,
		`imgedge_rpc_requests_total{code="NotFound",method="/imgedge.v1.ImageTransformService/EnsureVariant"}`: 1,
		`imgedge_stage_duration_seconds_count{stage="process"}`:                                                2,
		`imgedge_stage_duration_seconds_count{stage="store"}`:                                                  2,
		`imgedge_lookups_total{variants="remembered"}`:                                                         1,
		`imgedge_inflight_transforms`:                                                                          0,
		`imgedge_queue_depth`:                                                                                  0,
	}
	for name, v := range want {
		if got, ok := m[name]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	if m[`imgedge_stage_duration_seconds_count{stage="head"}`] < 4 {
		t.Errorf("head stage count %v", m[`imgedge_stage_duration_seconds_count{stage="head"}`])
	}
	// Every lookup is counted once, remembered or headed.
	if lookups := m[`imgedge_lookups_total{variants="remembered"}`] + m[`imgedge_lookups_total{variants="headed"}`]; lookups != m[`imgedge_stage_duration_seconds_count{stage="head"}`] {
		t.Errorf("%v lookups counted, %v head stages", lookups, m[`imgedge_stage_duration_seconds_count{stage="head"}`])
	}
	saving := 1 - m["imgedge_served_bytes_total"]/m["imgedge_original_bytes_total"]
	if saving <= 0 || saving >= 1 {
		t.Errorf("saving ratio %.3f", saving)
	}
}

// TestAutoQualityMetrics: each auto-quality search is counted once by
// format, with its trials, and the quality and score it answered.
func TestAutoQualityMetrics(t *testing.T) {
	st := newLocalStore(t)
	putVia(t, st)("photo.jpg", testimages.JPEG(800, 600, 95))
	h := startServer(t, st, nil)
	jpeg := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg", Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(400)), Format: imgedgev1.Format_FORMAT_JPEG, AutoQuality: true}})
	avif := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg", Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(400)), Format: imgedgev1.Format_FORMAT_AVIF, TargetScore: ptr(uint32(80))}})
	ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg", Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(400)), Format: imgedgev1.Format_FORMAT_WEBP, Quality: ptr(uint32(70))}})
	ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "photo.jpg", Variant: &imgedgev1.VariantSpec{Width: ptr(uint32(400)), Format: imgedgev1.Format_FORMAT_JPEG, AutoQuality: true}})

	rec := httptest.NewRecorder()
	h.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := parseMetrics(t, rec.Body)
	for _, c := range []struct {
		format string
		resp   *imgedgev1.EnsureVariantResponse
	}{{"jpeg", jpeg}, {"avif", avif}} {
		series := func(name, part string) float64 {
			return m[fmt.Sprintf(`imgedge_autoquality_%s_%s{format="%s"}`, name, part, c.format)]
		}
		if n := series("trials", "count"); n != 1 {
			t.Errorf("%s: %v searches counted, want 1 (the second JPEG call is a lookup)", c.format, n)
		}
		if trials := series("trials", "sum"); trials < 1 || trials > float64(config.Default().AutoQuality.Steps) {
			t.Errorf("%s: %v trials", c.format, trials)
		}
		if q := series("quality", "sum"); q != float64(c.resp.GetQuality()) {
			t.Errorf("%s: quality %v counted, the response says %d", c.format, q, c.resp.GetQuality())
		}
		if s := series("score", "sum"); math.Abs(s-float64(c.resp.GetScore())) > 0.051 { // the response says it to a tenth
			t.Errorf("%s: score %v counted, the response says %v", c.format, s, c.resp.GetScore())
		}
	}
	if n := m[`imgedge_autoquality_trials_count{format="webp"}`]; n != 0 {
		t.Errorf("a fixed quality counted as %v searches", n)
	}
}

func TestSIGTERMDrainsInFlightCalls(t *testing.T) {
	st, dir := newLocalStoreDir(t)
	const inflight = 4
	for i := range inflight {
		putVia(t, st)(fmt.Sprintf("big/%d.jpg", i), bigJPEG())
	}
	metricsAddr := freeAddr(t)
	p := startProcess(t, "--store", "file:"+dir, "--workers", "2", "--queue", "8", "--log-level", "error", "--metrics-addr", metricsAddr)
	c := dialClient(t, p.addr, client.WithDefaultDeadline(30*time.Second))

	errs := make(chan error, inflight)
	for i := range inflight {
		go func() {
			_, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("big/%d.jpg", i)})
			errs <- err
		}()
	}
	// Wait until the server is busy with them (each takes several hundred ms).
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		m := parseMetrics(t, resp.Body)
		return m["imgedge_inflight_transforms"]+m["imgedge_queue_depth"] >= inflight
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range inflight {
		if err := <-errs; err != nil {
			t.Errorf("in-flight call failed during shutdown: %v", err)
		}
	}
	// New calls are refused.
	late := dialClient(t, p.addr, client.WithDefaultDeadline(2*time.Second))
	if _, err := late.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: "big/0.jpg"}); !errorsIsUnavailable(err) {
		t.Errorf("a call after SIGTERM: %v, want Unavailable", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logs.String())
		}
		p.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not exit")
	}
	// Every variant is whole; no temporary file is left.
	matches, _ := filepath.Glob(filepath.Join(dir, bucket, "ProcessedImages", "*", "big", "*.jpg"))
	if len(matches) != inflight {
		t.Errorf("%d variants stored, want %d", len(matches), inflight)
	}
	for _, m := range matches {
		data, _ := os.ReadFile(m)
		if _, _, err := testimages.Decode(data); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, ".imgedge-tmp")); len(tmp) != 0 {
		t.Errorf("%d temporary files left", len(tmp))
	}
}

func errorsIsUnavailable(err error) bool {
	return status.Code(err) == codes.Unavailable
}

// TestMemoryStaysBoundedUnderOverload floods the real server process with
// 12 MP sources at four times its worker count and reads its peak RSS.
func TestMemoryStaysBoundedUnderOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const bound = 1 << 30 // documented in the README
	st, dir := newLocalStoreDir(t)
	twelveMP := testimages.JPEG(4000, 3000, 92)
	const workers, rounds = 2, 3
	for i := range 4 * workers * rounds {
		putVia(t, st)(fmt.Sprintf("mp12/%02d.jpg", i), twelveMP)
	}
	p := startProcess(t, "--store", "file:"+dir, "--workers", strconv.Itoa(workers), "--queue", strconv.Itoa(2*workers), "--log-level", "error")
	c := dialClient(t, p.addr, client.WithDefaultDeadline(60*time.Second))
	var ok, shed atomic.Int64
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range 4 * workers {
			wg.Go(func() {
				_, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("mp12/%02d.jpg", r*4*workers+i)})
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.ResourceExhausted:
					shed.Add(1)
				default:
					t.Errorf("call: %v", err)
				}
			})
		}
		wg.Wait()
	}
	if err := c.Health(context.Background(), ""); err != nil {
		t.Errorf("health after the overload: %v", err)
	}
	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("peak RSS %d MiB after %d calls served and %d shed", peak>>20, ok.Load(), shed.Load())
	if peak > bound || ok.Load() == 0 {
		t.Errorf("peak RSS %d MiB (bound %d MiB), %d served", peak>>20, bound>>20, ok.Load())
	}
}

// TestIdleMemoryIsGivenBack: after a burst of 12 MP transforms, the real
// server process gives the memory they freed back to the system once its
// pool has been idle for --free-memory-after: its RSS falls to under half
// its peak (without it, RSS stays where the burst left it).
func TestIdleMemoryIsGivenBack(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	st, dir := newLocalStoreDir(t)
	twelveMP := testimages.JPEG(4000, 3000, 92)
	const calls = 6
	for i := range calls {
		putVia(t, st)(fmt.Sprintf("idle/%d.jpg", i), twelveMP)
	}
	p := startProcess(t, "--store", "file:"+dir, "--workers", "2", "--free-memory-after", "250ms", "--log-level", "debug")
	c := dialClient(t, p.addr, client.WithDefaultDeadline(60*time.Second))
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if _, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("idle/%d.jpg", i)}); err != nil {
				t.Errorf("call: %v", err)
			}
		})
	}
	wg.Wait()
	peak := peakRSS(t, p.cmd.Process.Pid)
	var now int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if now = procStatusBytes(t, p.cmd.Process.Pid, "VmRSS:"); now < peak/2 {
			break
		}
	}
	t.Logf("peak RSS %d MiB, idle %d MiB", peak>>20, now>>20)
	if now >= peak/2 {
		t.Errorf("idle RSS %d MiB after a peak of %d MiB: not given back", now>>20, peak>>20)
	}
	for line := range strings.Lines(p.logs.String()) {
		if strings.Contains(line, "gave idle memory back") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// peakRSS is the process's peak resident memory (VmHWM).
func peakRSS(t *testing.T, pid int) int64 { return procStatusBytes(t, pid, "VmHWM:") }

// procStatusBytes reads one of a process's memory fields, in bytes, from
// /proc/PID/status.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
