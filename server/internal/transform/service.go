package transform

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	MetaBestOf     = "best-of"      // on "best" variants: the formats compared, e.g. "avif,webp,jpeg"
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
	d := DefaultAutoQuality
	if cfg.Auto.Targets == nil {
		cfg.Auto.Targets = d.Targets
	}
	if cfg.Auto.MinQuality == 0 {
		cfg.Auto.MinQuality = d.MinQuality
	}
	if cfg.Auto.MaxQuality == 0 {
		cfg.Auto.MaxQuality = d.MaxQuality
	}
	if cfg.Auto.Steps == 0 {
		cfg.Auto.Steps = d.Steps
	}
	if cfg.Auto.SkipJPEGAtOrBelow == 0 {
		cfg.Auto.SkipJPEGAtOrBelow = d.SkipJPEGAtOrBelow
	}
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

// candidate is one variant EnsureVariant may store: a resolved spec with a
// concrete format, and its key. "best" has one per accepted format.
type candidate struct {
	spec variant.Spec
	key  string
}

// bestOf names the formats a "best" choice compared ("" for one candidate):
// a stored variant answers a "best" request only if it won among the same
// formats, so a JPEG made for a JPEG-only viewer never stands in for the
// WebP a WebP viewer should get.
func bestOf(cands []candidate) string {
	if len(cands) < 2 {
		return ""
	}
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.spec.Format.String()
	}
	return strings.Join(names, ",")
}

// candidates expands a resolved spec into the variants to consider.
func (s *Service) candidates(source string, spec variant.Spec, accept string) ([]candidate, error) {
	formats := []variant.Format{spec.Format}
	if spec.Format == variant.FormatBest {
		formats = s.cfg.Defaults.Negotiation.Candidates(accept)
	}
	out := make([]candidate, 0, len(formats))
	for _, f := range formats {
		cs := spec
		cs.Format = f
		cs = cs.Resolve("", s.cfg.Defaults)
		key := variant.Key(s.cfg.Prefix, source, cs)
		if err := variant.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("variant key for %q: %w", source, err)
		}
		out = append(out, candidate{cs, key})
	}
	return out, nil
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
	cands, err := s.candidates(key, spec, req.Accept)
	if err != nil {
		return EnsureResult{}, err
	}
	res, done, _, err := s.lookup(ctx, bucket, key, cands)
	if err != nil || done {
		if err == nil {
			s.obs.Ensured(res.Outcome, res.OriginalSize, res.Size)
		}
		return res, err
	}

	// Collapse identical concurrent builds into one. The build runs detached
	// from this caller's cancellation so that one impatient caller cannot fail
	// the others; it is bounded by ProcessTimeout instead.
	flight := bucket + "\x00" + cands[0].key + "\x00" + strconv.Itoa(len(cands))
	if req.DryRun {
		flight += "\x00dry-run"
	}
	ch := s.group.DoChan(flight, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProcessTimeout)
		defer cancel()
		return s.build(bctx, bucket, key, cands, req.DryRun)
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

// lookup is the hot path: HEAD the original and every candidate variant
// concurrently, then the marker if needed. A fresh variant answers (the
// smallest, when several candidates exist). done reports whether res is the
// final answer; if not, stale maps candidate keys to the ETags of stale
// variants there.
func (s *Service) lookup(ctx context.Context, bucket, key string, cands []candidate) (res EnsureResult, done bool, stale map[string]string, err error) {
	start := time.Now()
	defer func() { s.obs.Stage("head", time.Since(start)) }()

	type headResult struct {
		info store.ObjectInfo
		err  error
	}
	heads := make([]chan headResult, len(cands))
	for i, c := range cands {
		heads[i] = make(chan headResult, 1)
		go func() {
			info, err := s.store.Head(ctx, bucket, c.key)
			heads[i] <- headResult{info, err}
		}()
	}
	orig, err := s.store.Head(ctx, bucket, key)
	results := make([]headResult, len(cands))
	for i := range heads {
		results[i] = <-heads[i]
	}
	if err != nil {
		return EnsureResult{}, false, nil, fmt.Errorf("original: %w", err)
	}
	stale = map[string]string{}
	best := -1
	want := bestOf(cands)
	for i, v := range results {
		switch {
		case v.err != nil && !errors.Is(v.err, store.ErrNotFound):
			return EnsureResult{}, false, nil, fmt.Errorf("variant: %w", v.err)
		case v.err != nil:
		case v.info.Metadata[MetaSourceETag] == orig.ETag && (want == "" || v.info.Metadata[MetaBestOf] == want):
			if best < 0 || v.info.Size < results[best].info.Size {
				best = i
			}
		default:
			stale[cands[i].key] = v.info.ETag
		}
	}
	if best >= 0 {
		return variantResult(AlreadyExisted, orig, results[best].info, cands[best].key, cands[best].spec), true, nil, nil
	}
	marker, err := s.store.Head(ctx, bucket, cands[0].key+markerSuffix)
	switch {
	case err == nil && marker.Metadata[MetaSourceETag] == orig.ETag:
		return originalResult(orig, cands[0].key, cands[0].spec), true, nil, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return EnsureResult{}, false, nil, fmt.Errorf("marker: %w", err)
	}
	return EnsureResult{}, false, stale, nil
}

// build fetches the original, transforms it and stores the variant (or the
// marker saying the original is smaller). It runs once per key at a time. A
// dry run stops before writing and reports what would have been stored.
func (s *Service) build(ctx context.Context, bucket, key string, cands []candidate, dryRun bool) (EnsureResult, error) {
	// Another build may have finished between our lookup and now.
	res, done, stale, err := s.lookup(ctx, bucket, key, cands)
	if err != nil || done {
		return res, err
	}
	// Admission bounds the sources in memory; a worker is held only for
	// the CPU work, not while fetching or storing.
	ticket, err := s.pool.Admit()
	if err != nil {
		return EnsureResult{}, fmt.Errorf("%w: %d workers busy and the queue is full", ErrOverloaded, s.pool.Workers())
	}
	defer ticket.Release()

	start := time.Now()
	data, orig, err := s.store.Get(ctx, bucket, key, s.cfg.Limits.MaxSourceBytes)
	s.obs.Stage("fetch", time.Since(start))
	if err != nil {
		if errors.Is(err, store.ErrTooLarge) {
			return EnsureResult{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return EnsureResult{}, fmt.Errorf("original: %w", err)
	}
	specs := make([]variant.Spec, len(cands))
	for i, c := range cands {
		specs[i] = c.spec
	}
	stopWork, err := ticket.Run(ctx)
	if err != nil {
		return EnsureResult{}, err
	}
	out, chosen, err := s.process(ctx, data, specs)
	stopWork()
	data = nil // the source is no longer needed while storing
	if errors.Is(err, errNotWorthIt) {
		if dryRun {
			return originalResult(orig, cands[0].key, cands[0].spec), nil
		}
		return s.keepOriginal(ctx, bucket, cands[0].key, orig, cands[0].spec, 0)
	}
	if err != nil {
		return EnsureResult{}, fmt.Errorf("%s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return EnsureResult{}, err
	}
	c := cands[0]
	for _, cand := range cands {
		if cand.spec.Format == chosen.Format {
			c = cand
		}
	}
	smaller := float64(len(out.Data)) > float64(orig.Size)*(1-s.cfg.MinSaving)
	if dryRun {
		if smaller {
			return originalResult(orig, c.key, chosen), nil
		}
		info := store.ObjectInfo{Size: int64(len(out.Data)), Metadata: map[string]string{MetaWidth: strconv.Itoa(out.Width), MetaHeight: strconv.Itoa(out.Height), MetaQuality: strconv.Itoa(chosen.Quality)}}
		return variantResult(Created, orig, info, c.key, chosen), nil
	}
	start = time.Now()
	defer func() { s.obs.Stage("store", time.Since(start)) }()
	if smaller {
		return s.keepOriginal(ctx, bucket, cands[0].key, orig, cands[0].spec, len(out.Data))
	}
	return s.storeVariant(ctx, bucket, key, c.key, stale[c.key], orig, chosen, out, cands)
}

// storeVariant writes the variant with a condition, so that concurrent
// writers (other replicas) cannot both win: create-if-absent for a new key,
// replace-if-unchanged for a stale one.
func (s *Service) storeVariant(ctx context.Context, bucket, key, vkey, staleETag string, orig store.ObjectInfo, spec variant.Spec, out Output, cands []candidate) (EnsureResult, error) {
	opts := store.PutOptions{
		ContentType:  spec.Format.ContentType(),
		CacheControl: s.cfg.VariantCacheControl,
		Metadata: map[string]string{
			MetaSourceETag: orig.ETag,
			MetaWidth:      strconv.Itoa(out.Width),
			MetaHeight:     strconv.Itoa(out.Height),
			MetaQuality:    strconv.Itoa(spec.Quality),
		},
	}
	if b := bestOf(cands); b != "" {
		opts.Metadata[MetaBestOf] = b
	}
	if staleETag == "" {
		opts.IfNoneMatch = true
	} else {
		opts.IfMatch = staleETag
	}
	info, err := s.store.Put(ctx, bucket, vkey, out.Data, opts)
	if errors.Is(err, store.ErrPreconditionFailed) {
		// Another writer won the race; serve what it stored if it is fresh.
		if res, done, _, lerr := s.lookup(ctx, bucket, key, cands); lerr == nil && done {
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
	cands, err := s.candidates("input", spec, req.Accept)
	if err != nil {
		return Output{}, spec, err
	}
	specs := make([]variant.Spec, len(cands))
	for i, c := range cands {
		specs[i] = c.spec
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return Output{}, spec, err
	}
	defer release()
	out, chosen, err := s.process(ctx, data, specs)
	if errors.Is(err, errNotWorthIt) {
		// Transform always answers with an image: encode at the top quality.
		one := specs[len(specs)-1]
		one.AutoQuality, one.Quality = false, s.cfg.Auto.MaxQuality
		out, chosen, err = s.process(ctx, data, []variant.Spec{one})
	}
	return out, chosen, err
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

// process checks the header against the limits, then encodes: one fixed
// spec directly, or, with auto quality, each candidate format at the lowest
// quality meeting its target, keeping the smallest. It returns the output
// and the spec that produced it (with the quality chosen).
func (s *Service) process(ctx context.Context, data []byte, specs []variant.Spec) (Output, variant.Spec, error) {
	if len(data) == 0 {
		return Output{}, variant.Spec{}, fmt.Errorf("%w: the image is empty (0 bytes)", ErrUnsupportedImage)
	}
	info, err := s.proc.Probe(data)
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	if info.Pixels() > s.cfg.Limits.MaxSourcePixels {
		return Output{}, variant.Spec{}, fmt.Errorf("%w: %d×%d is %d pixels, the limit is %d", ErrTooLarge, info.Width, info.Height, info.Pixels(), s.cfg.Limits.MaxSourcePixels)
	}
	if err := ctx.Err(); err != nil {
		return Output{}, variant.Spec{}, err
	}
	start := time.Now()
	defer func() { s.obs.Stage("process", time.Since(start)) }()
	if !specs[0].AutoQuality {
		out, err := s.proc.Process(data, Operation{Spec: specs[0], Source: info})
		return out, specs[0], err
	}
	return s.autoQuality(ctx, data, info, specs)
}

func variantResult(o Outcome, orig, v store.ObjectInfo, vkey string, spec variant.Spec) EnsureResult {
	w, _ := strconv.Atoi(v.Metadata[MetaWidth])
	h, _ := strconv.Atoi(v.Metadata[MetaHeight])
	if q, err := strconv.Atoi(v.Metadata[MetaQuality]); err == nil && spec.AutoQuality {
		spec.Quality = q // the quality the search chose
	}
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
