package transform

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imgedge/imgedge/server/internal/store"
)

// backfillExtensions are the originals a backfill processes; other objects
// under the prefix are counted as skipped.
var backfillExtensions = []string{".jpg", ".jpeg", ".png", ".webp", ".avif", ".heic", ".heif", ".gif"}

// BackfillItem reports one original.
type BackfillItem struct {
	Key          string
	OriginalSize int64
	Result       EnsureResult // valid when Err is nil
	Err          error
	// Total is the number of originals a listing running ahead of the work
	// has counted so far; TotalFinal says that listing has finished.
	Total      int64
	TotalFinal bool
}

// BackfillSummary totals a backfill.
type BackfillSummary struct {
	Objects, Created, AlreadyExisted, OriginalIsSmaller, OriginalKept, Errors, Skipped int64
	OriginalBytes, ServedBytes, VariantBytes                                           int64
}

func (sum *BackfillSummary) add(it BackfillItem) {
	sum.Objects++
	if it.Err != nil {
		sum.Errors++
		return
	}
	sum.OriginalBytes += it.Result.OriginalSize
	sum.ServedBytes += it.Result.Size
	switch it.Result.Outcome {
	case Created:
		sum.Created++
		sum.VariantBytes += it.Result.Size
	case AlreadyExisted:
		sum.AlreadyExisted++
		sum.VariantBytes += it.Result.Size
	case OriginalIsSmaller:
		sum.OriginalIsSmaller++
	case OriginalKept:
		sum.OriginalKept++
	}
}

// Backfill ensures the variant req describes for every original under
// prefix in bucket, at most concurrency at a time, calling emit once per
// object (never concurrently). Per-object failures are reported, not fatal;
// the walk stops at the first error emit returns or when ctx ends. A build
// already running when ctx ends completes (writes are atomic), so nothing
// half-written is left behind.
func (s *Service) Backfill(ctx context.Context, bucket, prefix string, req Request, concurrency int, emit func(BackfillItem) error) (BackfillSummary, error) {
	var sum BackfillSummary
	if err := s.cfg.checkBucket(bucket); err != nil {
		return sum, err
	}
	if _, err := s.cfg.resolve(req.Variant); err != nil {
		return sum, err
	}
	concurrency = min(max(concurrency, 1), s.pool.Workers())

	// The work walks the listing at its own pace; a second walk only counts,
	// so progress can show how far along a large bucket is. It costs one
	// LIST request per thousand objects.
	var total atomic.Int64
	var totalFinal atomic.Bool
	countCtx, stopCounting := context.WithCancel(ctx)
	defer stopCounting()
	go func() {
		err := s.store.Walk(countCtx, bucket, prefix, s.cfg.Prefix, func(o store.ObjectInfo) error {
			if isOriginal(o.Key) {
				total.Add(1)
			}
			return nil
		})
		totalFinal.Store(err == nil)
	}()

	var mu sync.Mutex
	report := func(it BackfillItem) error {
		mu.Lock()
		defer mu.Unlock()
		sum.add(it)
		it.TotalFinal = totalFinal.Load()
		it.Total = max(total.Load(), sum.Objects-sum.Skipped)
		return emit(it)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	walkErr := s.store.Walk(gctx, bucket, prefix, s.cfg.Prefix, func(o store.ObjectInfo) error {
		if !isOriginal(o.Key) {
			mu.Lock()
			sum.Objects++
			sum.Skipped++
			mu.Unlock()
			return nil
		}
		if err := gctx.Err(); err != nil {
			return err
		}
		g.Go(func() error {
			res, err := s.ensureWithRetry(gctx, bucket, o.Key, req)
			if errors.Is(err, context.Canceled) && gctx.Err() != nil {
				return err
			}
			return report(BackfillItem{Key: o.Key, OriginalSize: o.Size, Result: res, Err: err})
		})
		return nil
	})
	err := errors.Join(walkErr, g.Wait())
	if ctx.Err() != nil {
		return sum, ctx.Err()
	}
	return sum, err
}

func isOriginal(key string) bool {
	return slices.Contains(backfillExtensions, strings.ToLower(path.Ext(key)))
}

// ensureWithRetry retries EnsureVariant while the pool is full: a backfill
// shares the workers with live traffic and should wait, not fail.
func (s *Service) ensureWithRetry(ctx context.Context, bucket, key string, req Request) (EnsureResult, error) {
	delay := 50 * time.Millisecond
	for {
		res, err := s.EnsureVariant(ctx, bucket, key, req)
		if !errors.Is(err, ErrOverloaded) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}
