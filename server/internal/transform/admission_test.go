package transform

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

func newServiceWith(t *testing.T, cfg Config, st Store, p Processor, l workpool.Limits) *Service {
	t.Helper()
	s, err := New(cfg, st, p, workpool.New(l))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestProcessTimeoutStartsWithTheWork: a build that waited in the queue and
// then worked longer than ProcessTimeout in all is still stored; so is work
// that alone outlasted it (libvips cannot be stopped midway, and throwing
// finished work away helps nobody).
func TestProcessTimeoutStartsWithTheWork(t *testing.T) {
	cfg := testConfig()
	cfg.ProcessTimeout = 300 * time.Millisecond
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5, delay: 200 * time.Millisecond}
	svc := newServiceWith(t, cfg, st, proc, workpool.Limits{Workers: 1, Queue: 2})
	st.set("a.jpg", make([]byte, 1000))
	st.set("b.jpg", make([]byte, 1000))

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, key := range []string{"a.jpg", "b.jpg"} {
		wg.Go(func() {
			res, err := svc.EnsureVariant(context.Background(), "bkt", key, Request{})
			if err == nil && res.Outcome != Created {
				err = errors.New("outcome " + res.Outcome.String())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d (queued, then 200 ms of work, 300 ms timeout): %v", i, err)
		}
	}

	proc.delay = 450 * time.Millisecond
	st.set("c.jpg", make([]byte, 1000))
	if res, err := svc.EnsureVariant(context.Background(), "bkt", "c.jpg", Request{}); err != nil || res.Outcome != Created {
		t.Errorf("work longer than the timeout: %+v, %v; want it stored", res, err)
	}
}

// TestTransformIsAdmittedBeforeItsBytes: a full service refuses a Transform
// before reading any input, and received bytes count against the budget.
func TestTransformIsAdmittedBeforeItsBytes(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxStreamBytes = 600
	svc := newServiceWith(t, cfg, newMemStore(), &fakeProcessor{ratio: 0.5}, workpool.Limits{Workers: 1, Queue: 1, BufferBytes: 1000})

	a, err := svc.StartTransform(Request{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := svc.StartTransform(Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.StartTransform(Request{}); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a third upload with 1 worker and a queue of 1 = %v, want ErrOverloaded", err)
	}
	if err := a.Receive(600); err != nil {
		t.Fatal(err)
	}
	if err := a.Receive(1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("past the stream limit = %v, want ErrTooLarge", err)
	}
	if err := b.Receive(500); !errors.Is(err, ErrOverloaded) {
		t.Errorf("past the buffer budget = %v, want ErrOverloaded", err)
	}
	b.Close()
	c, err := svc.StartTransform(Request{})
	if err != nil {
		t.Fatalf("after a Close, an upload is admitted again: %v", err)
	}
	defer c.Close()
	if err := c.Receive(300); err != nil {
		t.Errorf("within the budget: %v", err)
	}
}

// TestDecodedSizeIsAdmitted: an image whose decoded size exceeds the whole
// pixel budget is refused as too large, however small its file.
func TestDecodedSizeIsAdmitted(t *testing.T) {
	st := newMemStore()
	st.set("a.jpg", make([]byte, 1000))
	// fakeProcessor: 4000×3000 at 3 bytes a pixel, 36 MB.
	svc := newServiceWith(t, testConfig(), st, &fakeProcessor{ratio: 0.5}, workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000})
	_, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("EnsureVariant = %v, want ErrTooLarge naming the memory needed", err)
	}
	if _, _, err := svc.Transform(context.Background(), make([]byte, 100), Request{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Transform = %v, want ErrTooLarge", err)
	}
}

// TestMaxWaitAnswersPending: a caller that will not wait for a cold build
// hears Pending at its MaxWait, the build goes on and stores the variant,
// and the next call finds it.
func TestMaxWaitAnswersPending(t *testing.T) {
	st := newMemStore()
	// The build blocks in Process until the test lets it go.
	proc := &fakeProcessor{ratio: 0.5, started: make(chan struct{})}
	svc := newTestService(t, st, proc, 1, 1)
	st.set("a.jpg", make([]byte, 1000))
	res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{MaxWait: 30 * time.Millisecond})
	if err != nil || res.Outcome != Pending || res.Key != "a.jpg" || res.VariantKey != "ProcessedImages/full_q90/a.jpg.jpg" {
		t.Fatalf("cold call with a 30 ms budget while the build is held: %+v, %v", res, err)
	}
	// A patient caller gets the variant of the same build (joining it, or
	// finding it stored), never a second build.
	done := make(chan EnsureResult, 1)
	go func() {
		res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-proc.started // let the build go on
	if res := <-done; res.Outcome != Created && res.Outcome != AlreadyExisted {
		t.Fatalf("patient call: %+v", res)
	}
	res, err = svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{MaxWait: time.Millisecond})
	if err != nil || res.Outcome != AlreadyExisted {
		t.Fatalf("after the build: %+v, %v", res, err)
	}
	if n := proc.runs.Load(); n != 1 {
		t.Errorf("%d transforms, want 1", n)
	}
}

// TestAutoQualitySearchInterpolates: on a score that rises evenly with the
// quality, the search finds the lowest passing quality in fewer encodes
// than a bisection of the range (6).
func TestAutoQualitySearchInterpolates(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5}
	svc := newTestService(t, st, proc, 1, 1)
	st.set("a.png", make([]byte, 10000))
	res, err := svc.EnsureVariant(context.Background(), "bkt", "a.png", Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatJPEG, AutoQuality: true}}})
	if err != nil || res.Spec.Quality != 90 {
		t.Fatalf("auto: %+v, %v; want quality 90 (the fake scores q-20 against a target of 70)", res, err)
	}
	if n := proc.runs.Load(); n > 4 {
		t.Errorf("%d encodes, want at most 4", n)
	}
}
