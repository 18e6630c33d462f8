package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

// memoryBound is the peak RSS the README documents for the default
// --max-memory, whatever the worker count.
const memoryBound = 1 << 30

// floodResult counts a flood's answers by code.
type floodResult struct {
	mu    sync.Mutex
	codes map[codes.Code]int
}

func (r *floodResult) add(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.codes == nil {
		r.codes = map[codes.Code]int{}
	}
	r.codes[status.Code(err)]++
}

// healthDuring calls Health every 50 ms until stop is closed, counting
// failures: the service must keep answering while it sheds load.
func healthDuring(c *client.Client, stop <-chan struct{}) (failures *atomic.Int64, done <-chan struct{}) {
	failures = &atomic.Int64{}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := c.Health(ctx, ""); err != nil {
				failures.Add(1)
			}
			cancel()
		}
	}()
	return failures, finished
}

// TestUploadFloodStaysBounded sends 24 concurrent 60 MiB Transform streams
// to a server whose stream limit allows them: it admits a few before
// reading them, refuses the rest at their first message or when the
// buffer budget is spent, and its peak RSS stays under the bound.
func TestUploadFloodStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const streams, size = 24, 60 << 20
	p := startProcess(t, "--store", "file:"+t.TempDir(), "--workers", "2", "--max-source-bytes", "64MiB", "--log-level", "error")
	c := dialClient(t, p.addr, client.WithDefaultDeadline(2*time.Minute))
	upload := bytes.Repeat([]byte{0xFF, 0xD8, 0xFF, 0xE0}, size/4) // a JPEG's start, then nonsense

	stop := make(chan struct{})
	healthFailures, healthDone := healthDuring(c, stop)
	var res floodResult
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() {
			_, err := c.Transform(context.Background(), &imgedgev1.VariantSpec{}, bytes.NewReader(upload), &bytes.Buffer{})
			res.add(err)
		})
	}
	wg.Wait()
	close(stop)
	<-healthDone

	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("%d × %d MiB streams: answers %v; peak RSS %d MiB (bound %d MiB)", streams, size>>20, res.codes, peak>>20, memoryBound>>20)
	if peak > memoryBound {
		t.Errorf("peak RSS %d MiB over the bound", peak>>20)
	}
	if n := healthFailures.Load(); n > 0 {
		t.Errorf("health failed %d times during the flood", n)
	}
	for code, n := range res.codes {
		if code != codes.ResourceExhausted && code != codes.InvalidArgument {
			t.Errorf("%d streams answered %v, want ResourceExhausted (shed) or InvalidArgument (not an image)", n, code)
		}
	}
	if res.codes[codes.ResourceExhausted] == 0 || res.codes[codes.InvalidArgument] == 0 {
		t.Errorf("answers %v: want some streams shed and some read whole", res.codes)
	}
}

// TestDecodedSizeFloodStaysBounded floods the server with 1-bit
// 7000×7000 PNGs (6 KB on disk, 49 MP decoded): admission weighs them by
// their decoded size, so their number does not decide the peak RSS.
func TestDecodedSizeFloodStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	st, dir := newLocalStoreDir(t)
	png := testimages.OneBitPNG(7000, 7000)
	const calls = 16
	for i := range calls {
		putVia(t, st)(fmt.Sprintf("onebit/%02d.png", i), png)
	}
	p := startProcess(t, "--store", "file:"+dir, "--workers", "4", "--queue", strconv.Itoa(calls), "--log-level", "error")
	c := dialClient(t, p.addr, client.WithDefaultDeadline(3*time.Minute))

	stop := make(chan struct{})
	healthFailures, healthDone := healthDuring(c, stop)
	var res floodResult
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			_, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("onebit/%02d.png", i), Variant: &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_PNG}})
			res.add(err)
		})
	}
	wg.Wait()
	close(stop)
	<-healthDone

	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("%d × 1-bit 7000×7000 PNG (%d bytes each): answers %v; peak RSS %d MiB (bound %d MiB)", calls, len(png), res.codes, peak>>20, memoryBound>>20)
	if peak > memoryBound {
		t.Errorf("peak RSS %d MiB over the bound", peak>>20)
	}
	if n := healthFailures.Load(); n > 0 {
		t.Errorf("health failed %d times during the flood", n)
	}
	if res.codes[codes.OK] != calls {
		t.Errorf("answers %v, want all %d OK (they wait for memory, not fail)", res.codes, calls)
	}
}
