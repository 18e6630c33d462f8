package transform

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// TestKnownVariantsSpareTheirHEAD: once a lookup has found (or a build has
// stored) a variant, the same call HEADs only its original while the
// answer is remembered, and answers exactly what a full lookup would. A
// replaced original is seen at once; a variant deleted behind the service
// is seen once the TTL has run out.
func TestKnownVariantsSpareTheirHEAD(t *testing.T) {
	const ttl = time.Minute
	cases := []struct {
		name    string
		ratio   float64 // the fake encoder's output size over its input's
		req     Request
		stored  string // the object the answer rests on
		outcome Outcome
	}{
		{"variant", 0.5, Request{}, "ProcessedImages/full_q90/a.jpg.jpg", AlreadyExisted},
		{"keep-original marker", 0.97, Request{}, "ProcessedImages/full_q90/a.jpg.jpg" + markerSuffix, OriginalIsSmaller},
		{"best of three formats", 0.5,
			Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}, Viewer: variant.ClassAVIF}},
			"ProcessedImages/w720_qauto/a.jpg.avif", AlreadyExisted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := newMemStore()
			st.set("a.jpg", make([]byte, 1000))
			proc := &fakeProcessor{ratio: tc.ratio}
			cfg := testConfig()
			cfg.Defaults.Negotiation.AVIF = true
			cfg.KnownVariantTTL = ttl
			svc, err := New(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1_800_000_000, 0)
			svc.known.now = func() time.Time { return now }
			cfg.KnownVariantTTL = 0
			plain, err := New(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}

			if _, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", tc.req); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Head(ctx, "bkt", tc.stored); err != nil {
				t.Fatalf("the build stored no %s: %v", tc.stored, err)
			}
			want, err := plain.EnsureVariant(ctx, "bkt", "a.jpg", tc.req)
			if err != nil || want.Outcome != tc.outcome {
				t.Fatalf("a full lookup: %+v, %v", want, err)
			}

			heads := st.heads.Load()
			got, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", tc.req)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("remembered answer:\n got %+v, %v\nwant %+v", got, err, want)
			}
			if n := st.heads.Load() - heads; n != 1 {
				t.Errorf("a known hit made %d HEADs, want 1 (its original)", n)
			}

			// A replaced original is seen on the next call: one more build,
			// which stores one object.
			puts := st.puts.Load()
			st.set("a.jpg", make([]byte, 2000))
			got, err = svc.EnsureVariant(ctx, "bkt", "a.jpg", tc.req)
			if err != nil || st.puts.Load() != puts+1 || got.OriginalSize != 2000 {
				t.Errorf("after the original changed: %+v, %v, %d objects stored, want 1", got, err, st.puts.Load()-puts)
			}

			// A deleted stored object is answered until the TTL runs out,
			// then built again.
			puts = st.puts.Load()
			st.remove(tc.stored)
			if got, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", tc.req); err != nil || got.Outcome != tc.outcome || st.puts.Load() != puts {
				t.Errorf("within the TTL: %+v, %v, %d objects stored, want none", got, err, st.puts.Load()-puts)
			}
			now = now.Add(ttl)
			if _, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", tc.req); err != nil || st.puts.Load() != puts+1 {
				t.Errorf("after the TTL: %v, %d objects stored, want 1", err, st.puts.Load()-puts)
			}
			if _, err := st.Head(ctx, "bkt", tc.stored); err != nil {
				t.Errorf("%s was not stored again: %v", tc.stored, err)
			}

			// A deleted original is NotFound, whatever is remembered.
			st.remove("a.jpg")
			if _, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", tc.req); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("original deleted: %v, want not found", err)
			}
		})
	}
}

// TestKnownFailuresSpareTheFetch: a build that fails because of the
// original itself (here it cannot be decoded) fails the same way on the
// next call after one HEAD, without a GET, until the original changes or
// the TTL runs out.
func TestKnownFailuresSpareTheFetch(t *testing.T) {
	const ttl = time.Minute
	ctx := context.Background()
	st := newMemStore()
	st.set("a.jpg", []byte("bad bytes")) // the fake processor cannot decode these
	cfg := testConfig()
	cfg.KnownVariantTTL = ttl
	svc, err := New(cfg, st, &fakeProcessor{ratio: 0.5}, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	svc.known.now = func() time.Time { return now }

	_, first := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{})
	if !errors.Is(first, ErrUnsupportedImage) {
		t.Fatalf("first call: %v, want an undecodable image", first)
	}
	gets, heads := st.gets.Load(), st.heads.Load()
	_, again := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{})
	if !errors.Is(again, ErrUnsupportedImage) || again.Error() != first.Error() {
		t.Errorf("second call: %v, want the first's error, %v", again, first)
	}
	if st.gets.Load() != gets || st.heads.Load() != heads+1 {
		t.Errorf("second call: %d GETs and %d HEADs, want none and 1 (the original's)", st.gets.Load()-gets, st.heads.Load()-heads)
	}

	now = now.Add(ttl)
	if _, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{}); !errors.Is(err, ErrUnsupportedImage) || st.gets.Load() != gets+1 {
		t.Errorf("after the TTL: %v, %d GETs, want the error again from one more GET", err, st.gets.Load()-gets)
	}

	st.set("a.jpg", make([]byte, 1000)) // replaced by a good image
	if res, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{}); err != nil || res.Outcome != Created {
		t.Errorf("after the original changed: %+v, %v, want a new variant", res, err)
	}
}

// TestOnlyTheOriginalsFailuresAreKept: what the original causes fails again
// on the same bytes; timeouts, a full queue and the store's trouble may
// pass on the next call.
func TestOnlyTheOriginalsFailuresAreKept(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kept bool
	}{
		{fmt.Errorf("a.jpg: %w: premature end of JPEG image", ErrUnsupportedImage), true},
		{fmt.Errorf("a.jpg: %w: 16000×16000 is 256000000 pixels", ErrTooLarge), true},
		{fmt.Errorf("a.jpg: %w: webp stores at most 16383 on a side", ErrTooLargeForFormat), true},
		{fmt.Errorf("a.jpg: %w: a worker", ErrOverloaded), false},
		{fmt.Errorf("a.jpg: auto-quality after 2 trials: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("original: %w", store.ErrUnavailable), false},
		{fmt.Errorf("a.jpg: %w", ErrConflict), false},
		{errors.New("vips: out of order"), false},
	} {
		k := newKnownAnswers(time.Minute)
		k.rememberFailure("id", `"e"`, tc.err)
		got, ok := k.get("id")
		if ok != tc.kept || (ok && !errors.Is(got.failure, tc.err)) {
			t.Errorf("%v: kept %v (%v), want %v", tc.err, ok, got.failure, tc.kept)
		}
	}
}

func TestKnownAnswersAreBounded(t *testing.T) {
	k := newKnownAnswers(time.Minute)
	cands := []candidate{{key: "v.jpg"}}
	created := EnsureResult{Outcome: Created, VariantKey: "v.jpg"}
	for i := range knownCapacity + 10 {
		k.remember(strconv.Itoa(i), cands, `"e"`, created)
	}
	if n := k.cache.Len(); n != knownCapacity {
		t.Errorf("%d answers held, want %d", n, knownCapacity)
	}
	if _, ok := k.get("0"); ok {
		t.Error("the oldest answer is still held")
	}
	if a, ok := k.get(strconv.Itoa(knownCapacity + 9)); !ok || a.answer(store.ObjectInfo{}, cands).Outcome != AlreadyExisted {
		t.Errorf("the newest answer: %+v, %v; want it remembered as already existing", a, ok)
	}

	// What is not an answer found among the candidates is not remembered.
	for _, res := range []EnsureResult{{Outcome: Created, VariantKey: "other.jpg"}, {Outcome: Pending, VariantKey: "v.jpg"}} {
		k.remember("x", cands, `"e"`, res)
		if _, ok := k.get("x"); ok {
			t.Errorf("%+v was remembered", res)
		}
	}

	off := newKnownAnswers(0)
	off.remember("x", cands, `"e"`, created)
	if _, ok := off.get("x"); ok {
		t.Error("a zero TTL remembered an answer")
	}
}

// TestKnownVariantsUnderConcurrentCalls: callers asking for many variants
// at once, while an original is replaced, each get an answer for the
// original they could have seen (run under the race detector by make test).
func TestKnownVariantsUnderConcurrentCalls(t *testing.T) {
	st := newMemStore()
	cfg := testConfig()
	cfg.KnownVariantTTL = time.Minute
	svc, err := New(cfg, st, &fakeProcessor{ratio: 0.5}, workpool.New(workpool.Limits{Workers: 2, Queue: 64}))
	if err != nil {
		t.Fatal(err)
	}
	const keys = 8
	for k := range keys {
		st.set(fmt.Sprintf("%d.jpg", k), make([]byte, 1000))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16*keys)
	for c := range 16 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("%d.jpg", (c+i)%keys)
				res, err := svc.EnsureVariant(ctx, "bkt", key, Request{})
				if err == nil && (res.OriginalSize != 1000 && res.OriginalSize != 3000 || res.Size != res.OriginalSize/2) {
					err = fmt.Errorf("%s: %+v", key, res)
				}
				if err != nil {
					errs <- err
					return
				}
				if c == 0 && i == 25 {
					st.set("0.jpg", make([]byte, 3000))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if res, err := svc.EnsureVariant(ctx, "bkt", "0.jpg", Request{}); err != nil || res.OriginalSize != 3000 || res.Size != 1500 {
		t.Errorf("after the replace: %+v, %v", res, err)
	}
}
