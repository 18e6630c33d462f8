package transform

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgedge/imgedge/server/internal/store"
)

// panickingProcessor panics in Process while armed, as a bug in the
// pipeline would on one image.
type panickingProcessor struct {
	*fakeProcessor
	armed atomic.Bool
}

func (p *panickingProcessor) Process(data []byte, op Operation) (Output, error) {
	if p.armed.Load() {
		panic("index out of range [7] with length 7")
	}
	return p.fakeProcessor.Process(data, op)
}

// panickingStore panics in Head while armed, on the original's key
// (variants false) or on every other key (variants true).
type panickingStore struct {
	*memStore
	armed    atomic.Bool
	variants bool
}

func (s *panickingStore) Head(ctx context.Context, bucket, key string) (store.ObjectInfo, error) {
	if s.armed.Load() && (key == "a.jpg") != s.variants {
		panic("nil map entry")
	}
	return s.memStore.Head(ctx, bucket, key)
}

// TestPanicsFailTheCallNotTheProcess: a panic in a build or in a lookup,
// which run on goroutines of their own (shared by concurrent callers),
// fails the callers with an internal error that carries the panic and its
// stack; the process goes on (an unrecovered panic there would stop it,
// and this test binary with it), nothing is stored, and the worker and
// memory the build held are free again: with one worker, the next call
// builds.
func TestPanicsFailTheCallNotTheProcess(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		variants bool
		arm      func(*panickingStore, *panickingProcessor) *atomic.Bool
	}{
		{"in a build", false, func(_ *panickingStore, p *panickingProcessor) *atomic.Bool { return &p.armed }},
		{"in the original's HEAD", false, func(s *panickingStore, _ *panickingProcessor) *atomic.Bool { return &s.armed }},
		{"in a variant's HEAD", true, func(s *panickingStore, _ *panickingProcessor) *atomic.Bool { return &s.armed }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &panickingStore{memStore: newMemStore(), variants: tc.variants}
			proc := &panickingProcessor{fakeProcessor: &fakeProcessor{ratio: 0.5}}
			svc := newTestService(t, st, proc, 1, 1)
			st.set("a.jpg", make([]byte, 1000))
			armed := tc.arm(st, proc)
			armed.Store(true)

			// Concurrent callers share the build or the lookup that panics.
			errs := make(chan error, 3)
			for range cap(errs) {
				go func() {
					_, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{MaxWait: time.Minute})
					errs <- err
				}()
			}
			for range cap(errs) {
				err := <-errs
				if err == nil || !strings.Contains(err.Error(), "panic: ") || !strings.Contains(err.Error(), "panic_test.go") {
					t.Fatalf("a call during the panic: %v, want the panic and its stack", err)
				}
				for _, domain := range []error{ErrOverloaded, ErrInvalidArgument, ErrUnsupportedImage, ErrTooLarge, store.ErrUnavailable, store.ErrNotFound, context.DeadlineExceeded} {
					if errors.Is(err, domain) {
						t.Fatalf("the panic reads as %v, want an internal error", domain)
					}
				}
			}
			if n := st.puts.Load(); n != 0 {
				t.Fatalf("%d objects written by a build that panicked", n)
			}

			armed.Store(false)
			res, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{})
			if err != nil || res.Outcome != Created {
				t.Fatalf("the call after the panic: %+v, %v", res, err)
			}
		})
	}
}
