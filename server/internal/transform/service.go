package transform

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// Metadata keys recorded on stored variants and markers.
const (
	MetaSourceETag = "source-etag" // ETag of the original the variant was made from
	MetaWidth      = "width"
	MetaHeight     = "height"
	MetaQuality    = "quality"
	MetaVariant    = "variant-size" // on markers: the size the rejected variant had
)

// markerSuffix names the object that remembers "the original is smaller":
// it sits beside the variant's key and never ends in an image extension.
const markerSuffix = ".keep-original"

// Service implements EnsureVariant and Transform.
type Service struct {
	cfg   Config
	store Store
	proc  Processor
	pool  *workpool.Pool
	obs   Observer
	group singleflight.Group
}

// New returns a service. The pool bounds concurrent image work.
func New(cfg Config, st Store, proc Processor, pool *workpool.Pool) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("transform: %w", err)
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	return &Service{cfg: cfg, store: st, proc: proc, pool: pool, obs: obs}, nil
}

// EnsureResult is the answer to EnsureVariant.
type EnsureResult struct {
	Outcome Outcome
	// Key to serve: the variant's, or the original's.
	Key         string
	ContentType string
	Size        int64
	ETag        string
	// OriginalSize is the original's size in bytes.
	OriginalSize int64
	// VariantKey is the variant's deterministic key, even when not served.
	VariantKey string
	// Spec is the resolved variant.
	Spec          variant.Spec
	Width, Height int
}

// EnsureVariant makes sure the variant of bucket/key described by req is
// stored and fresh, and says what to serve. It returns only after a created
// variant is durably stored.
func (s *Service) EnsureVariant(ctx context.Context, bucket, key string, req Request) (EnsureResult, error) {
	if err := s.cfg.checkObject(bucket, key); err != nil {
		return EnsureResult{}, err
	}
	spec, err := s.cfg.resolve(req)
	if err != nil {
		return EnsureResult{}, err
	}
	vkey := variant.Key(s.cfg.Prefix, key, spec)
	if err := variant.ValidateKey(vkey); err != nil {
		return EnsureResult{}, fmt.Errorf("variant key for %q: %w", key, err)
	}

	res, done, _, err := s.lookup(ctx, bucket, key, vkey, spec)
	if err != nil || done {
		if err == nil {
			s.obs.Ensured(res.Outcome, res.OriginalSize, res.Size)
		}
		return res, err
	}

	// Collapse identical concurrent builds into one. The build runs detached
	// from this caller's cancellation so that one impatient caller cannot fail
	// the others; it is bounded by ProcessTimeout instead.
	flight := bucket + "\x00" + vkey
	if req.DryRun {
		flight += "\x00dry-run"
	}
	ch := s.group.DoChan(flight, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProcessTimeout)
		defer cancel()
		return s.build(bctx, bucket, key, vkey, spec, req.DryRun)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return EnsureResult{}, r.Err
		}
		res := r.Val.(EnsureResult)
		s.obs.Ensured(res.Outcome, res.OriginalSize, res.Size)
		return res, nil
	case <-ctx.Done():
		return EnsureResult{}, ctx.Err()
	}
}

// lookup is the hot path: HEAD the original and the variant concurrently,
// then the marker if needed. done reports whether res is the final answer;
// if not, staleETag is the ETag of a stale variant at vkey ("" if none).
func (s *Service) lookup(ctx context.Context, bucket, key, vkey string, spec variant.Spec) (res EnsureResult, done bool, staleETag string, err error) {
	start := time.Now()
	defer func() { s.obs.Stage("head", time.Since(start)) }()

	type headResult struct {
		info store.ObjectInfo
		err  error
	}
	variantCh := make(chan headResult, 1)
	go func() {
		info, err := s.store.Head(ctx, bucket, vkey)
		variantCh <- headResult{info, err}
	}()
	orig, err := s.store.Head(ctx, bucket, key)
	v := <-variantCh
	if err != nil {
		return EnsureResult{}, false, "", fmt.Errorf("original: %w", err)
	}
	if v.err != nil && !errors.Is(v.err, store.ErrNotFound) {
		return EnsureResult{}, false, "", fmt.Errorf("variant: %w", v.err)
	}
	if v.err == nil {
		if v.info.Metadata[MetaSourceETag] == orig.ETag {
			return variantResult(AlreadyExisted, orig, v.info, vkey, spec), true, "", nil
		}
		staleETag = v.info.ETag
	}
	marker, err := s.store.Head(ctx, bucket, vkey+markerSuffix)
	switch {
	case err == nil && marker.Metadata[MetaSourceETag] == orig.ETag:
		return originalResult(orig, vkey, spec), true, "", nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return EnsureResult{}, false, "", fmt.Errorf("marker: %w", err)
	}
	return EnsureResult{}, false, staleETag, nil
}

// build fetches the original, transforms it and stores the variant (or the
// marker saying the original is smaller). It runs once per key at a time. A
// dry run stops before writing and reports what would have been stored.
func (s *Service) build(ctx context.Context, bucket, key, vkey string, spec variant.Spec, dryRun bool) (EnsureResult, error) {
	// Another build may have finished between our lookup and now.
	res, done, staleETag, err := s.lookup(ctx, bucket, key, vkey, spec)
	if err != nil || done {
		return res, err
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return EnsureResult{}, err
	}
	defer release()

	start := time.Now()
	data, orig, err := s.store.Get(ctx, bucket, key, s.cfg.Limits.MaxSourceBytes)
	s.obs.Stage("fetch", time.Since(start))
	if err != nil {
		if errors.Is(err, store.ErrTooLarge) {
			return EnsureResult{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return EnsureResult{}, fmt.Errorf("original: %w", err)
	}
	out, err := s.process(ctx, data, spec)
	if err != nil {
		return EnsureResult{}, fmt.Errorf("%s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return EnsureResult{}, err
	}

	smaller := float64(len(out.Data)) > float64(orig.Size)*(1-s.cfg.MinSaving)
	if dryRun {
		if smaller {
			return originalResult(orig, vkey, spec), nil
		}
		info := store.ObjectInfo{Size: int64(len(out.Data)), Metadata: map[string]string{MetaWidth: strconv.Itoa(out.Width), MetaHeight: strconv.Itoa(out.Height)}}
		return variantResult(Created, orig, info, vkey, spec), nil
	}
	start = time.Now()
	defer func() { s.obs.Stage("store", time.Since(start)) }()
	if smaller {
		return s.keepOriginal(ctx, bucket, vkey, orig, spec, len(out.Data))
	}
	return s.storeVariant(ctx, bucket, key, vkey, staleETag, orig, spec, out)
}

// storeVariant writes the variant with a condition, so that concurrent
// writers (other replicas) cannot both win: create-if-absent for a new key,
// replace-if-unchanged for a stale one.
func (s *Service) storeVariant(ctx context.Context, bucket, key, vkey, staleETag string, orig store.ObjectInfo, spec variant.Spec, out Output) (EnsureResult, error) {
	opts := store.PutOptions{
		ContentType: spec.Format.ContentType(),
		Metadata: map[string]string{
			MetaSourceETag: orig.ETag,
			MetaWidth:      strconv.Itoa(out.Width),
			MetaHeight:     strconv.Itoa(out.Height),
			MetaQuality:    strconv.Itoa(spec.Quality),
		},
	}
	if staleETag == "" {
		opts.IfNoneMatch = true
	} else {
		opts.IfMatch = staleETag
	}
	info, err := s.store.Put(ctx, bucket, vkey, out.Data, opts)
	if errors.Is(err, store.ErrPreconditionFailed) {
		// Another writer won the race; serve what it stored if it is fresh.
		if res, done, _, lerr := s.lookup(ctx, bucket, key, vkey, spec); lerr == nil && done {
			return res, nil
		}
		return EnsureResult{}, fmt.Errorf("%w: %s: %w", ErrConflict, vkey, err)
	}
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing variant: %w", err)
	}
	info.Size = int64(len(out.Data))
	info.Metadata = opts.Metadata
	return variantResult(Created, orig, info, vkey, spec), nil
}

// keepOriginal remembers that the original is the better answer.
func (s *Service) keepOriginal(ctx context.Context, bucket, vkey string, orig store.ObjectInfo, spec variant.Spec, variantSize int) (EnsureResult, error) {
	_, err := s.store.Put(ctx, bucket, vkey+markerSuffix, nil, store.PutOptions{
		ContentType: "application/octet-stream",
		Metadata: map[string]string{
			MetaSourceETag: orig.ETag,
			MetaVariant:    strconv.Itoa(variantSize),
		},
	})
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing the keep-original marker: %w", err)
	}
	return originalResult(orig, vkey, spec), nil
}

// Transform converts image bytes without touching storage.
func (s *Service) Transform(ctx context.Context, data []byte, req Request) (Output, variant.Spec, error) {
	spec, err := s.cfg.resolve(req)
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	if int64(len(data)) > s.cfg.Limits.MaxSourceBytes {
		return Output{}, spec, fmt.Errorf("%w: input is %d bytes, the limit is %d", ErrTooLarge, len(data), s.cfg.Limits.MaxSourceBytes)
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return Output{}, spec, err
	}
	defer release()
	out, err := s.process(ctx, data, spec)
	return out, spec, err
}

// MaxSourceBytes is the largest input Transform accepts.
func (s *Service) MaxSourceBytes() int64 { return s.cfg.Limits.MaxSourceBytes }

func (s *Service) acquire(ctx context.Context) (func(), error) {
	release, err := s.pool.Acquire(ctx)
	if errors.Is(err, workpool.ErrFull) {
		return nil, fmt.Errorf("%w: %d workers busy and the queue is full", ErrOverloaded, s.pool.Workers())
	}
	return release, err
}

// process checks the header against the limits, then transforms.
func (s *Service) process(ctx context.Context, data []byte, spec variant.Spec) (Output, error) {
	if len(data) == 0 {
		return Output{}, fmt.Errorf("%w: the image is empty (0 bytes)", ErrUnsupportedImage)
	}
	info, err := s.proc.Probe(data)
	if err != nil {
		return Output{}, err
	}
	if info.Pixels() > s.cfg.Limits.MaxSourcePixels {
		return Output{}, fmt.Errorf("%w: %d×%d is %d pixels, the limit is %d", ErrTooLarge, info.Width, info.Height, info.Pixels(), s.cfg.Limits.MaxSourcePixels)
	}
	if err := ctx.Err(); err != nil {
		return Output{}, err
	}
	start := time.Now()
	out, err := s.proc.Process(data, Operation{Spec: spec, Source: info})
	s.obs.Stage("process", time.Since(start))
	return out, err
}

func variantResult(o Outcome, orig, v store.ObjectInfo, vkey string, spec variant.Spec) EnsureResult {
	w, _ := strconv.Atoi(v.Metadata[MetaWidth])
	h, _ := strconv.Atoi(v.Metadata[MetaHeight])
	return EnsureResult{
		Outcome:      o,
		Key:          vkey,
		ContentType:  spec.Format.ContentType(),
		Size:         v.Size,
		ETag:         v.ETag,
		OriginalSize: orig.Size,
		VariantKey:   vkey,
		Spec:         spec,
		Width:        w,
		Height:       h,
	}
}

func originalResult(orig store.ObjectInfo, vkey string, spec variant.Spec) EnsureResult {
	return EnsureResult{
		Outcome:      OriginalIsSmaller,
		Key:          orig.Key,
		ContentType:  orig.ContentType,
		Size:         orig.Size,
		ETag:         orig.ETag,
		OriginalSize: orig.Size,
		VariantKey:   vkey,
		Spec:         spec,
	}
}
