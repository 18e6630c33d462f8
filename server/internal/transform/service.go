package transform

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/warmgo"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// Metadata keys recorded on stored variants and markers.
const (
	MetaSourceETag = "source-etag" // ETag of the original the variant was made from
	MetaWidth      = "width"
	MetaHeight     = "height"
	MetaQuality    = "quality"
	MetaScore      = "score"        // with auto quality: the SSIMULACRA2 score the search measured
	MetaChroma     = "chroma"       // "full" where the search kept chroma whole below the encoder's own switch
	MetaVariant    = "variant-size" // on markers: the size the rejected variant had
	MetaBestOf     = "best-of"      // on "best" variants: the formats compared, e.g. "avif,webp,jpeg"
	MetaKept       = "kept"         // on markers of an original no variant stands for: why ("animated")
	MetaKeptRules  = "kept-rules"   // on those markers: the rules that decided it (Service.keptRules)
	MetaServedBy   = "served-by"    // on markers of a variant the service cannot make: the key of the one that stands for it
)

// Service implements EnsureVariant and Transform.
type Service struct {
	cfg   Config
	store Store
	proc  Processor
	pool  *workpool.Pool
	obs   Observer
	group singleflight.Group // builds
	// lookups collapses identical concurrent lookups: a hot variant asked
	// for by many callers at once costs one round of HEADs.
	lookups singleflight.Group
	// known spares a hot variant's own HEAD: only its original's is needed.
	known *knownAnswers
	// runners runs lookups and their HEADs on kept goroutines.
	runners *warmgo.Pool
	// tracer starts the stages' spans, from the TracerProvider in place
	// when the service was made (tracing is set up before).
	tracer trace.Tracer
}

// New returns a service. The pool bounds concurrent image work.
func New(cfg Config, st Store, proc Processor, pool *workpool.Pool) (*Service, error) {
	d := DefaultAutoQuality
	// A format without a target of its own has the default's.
	targets := maps.Clone(d.Targets)
	maps.Copy(targets, cfg.Auto.Targets)
	cfg.Auto.Targets = targets
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
	return &Service{cfg: cfg, store: st, proc: proc, pool: pool, obs: obs, known: newKnownAnswers(cfg.KnownVariantTTL),
		runners: warmgo.New(lookupRunners, time.Minute), tracer: otel.Tracer(tracerName)}, nil
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
	// Score is the SSIMULACRA2 score the auto-quality search measured for
	// the variant (0: a fixed quality, or not measured).
	Score float64
}

// EnsureVariant makes sure the variant of bucket/key described by req is
// stored and fresh, and says what to serve. It returns only after a created
// variant is durably stored.
func (s *Service) EnsureVariant(ctx context.Context, bucket, key string, req Request) (EnsureResult, error) {
	if err := s.cfg.checkObject(bucket, key); err != nil {
		return EnsureResult{}, err
	}
	cands, err := s.candidates(key, req.Variant)
	if err != nil {
		return EnsureResult{}, err
	}
	first, err := s.sharedLookup(ctx, bucket, key, cands)
	if err != nil {
		return EnsureResult{}, err
	}
	res := first.res
	if first.done {
		s.obs.Ensured(res.Outcome, res.OriginalSize, res.Size)
		return res, nil
	}

	// Collapse identical concurrent builds into one. The build runs detached
	// from this caller's cancellation so that one impatient caller cannot fail
	// the others; each of its steps has its own clock instead (see build).
	flight := bucket + "\x00" + cands[0].key + "\x00" + strconv.Itoa(len(cands))
	if req.DryRun {
		flight += "\x00dry-run"
	}
	ch := s.group.DoChan(flight, func() (res any, err error) {
		defer caught(&err)
		return s.build(context.WithoutCancel(ctx), bucket, key, cands, first, req.DryRun)
	})
	var patience <-chan time.Time
	if req.MaxWait > 0 && !req.DryRun {
		timer := time.NewTimer(req.MaxWait)
		defer timer.Stop()
		patience = timer.C
	}
	select {
	case <-patience:
		pending := EnsureResult{Outcome: Pending, Key: key, OriginalSize: res.OriginalSize, VariantKey: cands[0].key, Spec: cands[0].spec}
		s.obs.Ensured(Pending, res.OriginalSize, res.OriginalSize)
		return pending, nil
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

// build fetches the original, transforms it and stores the variant (or the
// marker saying the original is smaller), from what the caller's lookup
// found (first). It runs once per key at a time. A dry run stops before
// writing and reports what would have been stored.
//
// Each step has its own ProcessTimeout: fetching, waiting for memory and a
// worker, the work itself (whose clock starts when a worker takes it), and
// storing. Work that finished is stored, however long the queue was.
func (s *Service) build(ctx context.Context, bucket, key string, cands []candidate, first lookupAnswer, dryRun bool) (EnsureResult, error) {
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, s.cfg.ProcessTimeout) }
	fetchCtx, cancel := step()
	defer cancel()
	res, stale := first.res, first.stale
	if _, found := s.known.get(lookupID(bucket, key, cands)); found || !s.known.enabled() {
		// A build of the same variant may have finished since that lookup
		// (a herd of callers for a new image: those whose lookup ran while
		// it was storing): this service remembers what its builds stored,
		// so the lookup is repeated only when something is remembered, or
		// when nothing can be. A write from another replica is caught when
		// storing (a conditional write), at the cost of a build.
		var done bool
		var err error
		res, done, stale, err = s.lookup(fetchCtx, bucket, key, cands)
		if err != nil || done {
			return res, err
		}
	}
	if res.OriginalSize > s.cfg.Limits.MaxSourceBytes {
		return EnsureResult{}, fmt.Errorf("%w: %q is %d bytes, the limit is %d", ErrTooLarge, key, res.OriginalSize, s.cfg.Limits.MaxSourceBytes)
	}
	// Admission bounds the jobs and the memory they hold; a worker is held
	// only for the CPU work, not while fetching or storing.
	ticket, err := s.admit()
	if err != nil {
		return EnsureResult{}, err
	}
	defer ticket.Release()
	if err := s.holdBuffer(ticket, res.OriginalSize); err != nil {
		return EnsureResult{}, err
	}

	getCtx, end := s.stage(fetchCtx, "fetch")
	data, orig, err := s.store.Get(getCtx, bucket, key, s.cfg.Limits.MaxSourceBytes)
	end(err)
	if err != nil {
		return EnsureResult{}, fmt.Errorf("original: %w", err)
	}
	// The original may have been replaced by a larger one since the HEAD.
	if err := s.holdBuffer(ticket, int64(len(data))-res.OriginalSize); err != nil {
		return EnsureResult{}, err
	}
	out, chosen, err := s.work(ctx, ticket, data, choicesOf(cands), true)
	// A negotiated format whose variant does not beat the original gives
	// way to its fallbacks, in order; where none does, the original is
	// served.
	for err == nil && s.originalIsSmaller(out, orig) {
		next := fallbacksAfter(cands, chosen.Format)
		if len(next) == 0 {
			break
		}
		next[0].fallbacks = next[1:]
		s.obs.FellBack(chosen.Format, next[0].specs[0].Format)
		o, spec, err := s.work(ctx, ticket, data, next[0], true)
		if err != nil {
			break // the answer so far stands: the original
		}
		out, chosen = o, spec
	}
	storeCtx, cancel := step()
	defer cancel()
	if why, keep := keptBecause(err); keep {
		if dryRun {
			return originalResult(why.outcome(), orig, cands[0].key, cands[0].spec), nil
		}
		rules := ""
		if why != "" {
			rules = s.keptRules()
		}
		res, err := s.keepOriginal(storeCtx, bucket, cands[0].key, orig, cands[0].spec, 0, why, rules)
		if err == nil {
			s.known.remember(lookupID(bucket, key, cands), cands, orig.ETag, res)
		}
		return res, err
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", key, err)
		s.known.rememberFailure(lookupID(bucket, key, cands), orig.ETag, err)
		return EnsureResult{}, err
	}
	c, among, fallback := answering(cands, chosen.Format)
	smaller := s.originalIsSmaller(out, orig)
	if dryRun {
		if smaller {
			return originalResult(OriginalIsSmaller, orig, c.key, chosen), nil
		}
		info := store.ObjectInfo{Size: int64(len(out.Data)), Metadata: variantMetadata(out, chosen)}
		return variantResult(Created, orig, info, c.key, chosen), nil
	}
	storeCtx, end = s.stage(storeCtx, "store")
	switch {
	case smaller:
		rules := "" // decided again only when the original changes
		if fallback {
			rules = s.fallbackRules() // and when the budget might afford the format asked for
		}
		res, err = s.keepOriginal(storeCtx, bucket, cands[0].key, orig, cands[0].spec, len(out.Data), "", rules)
	case fallback:
		res, err = s.standIn(storeCtx, bucket, key, cands[0].key, c, among, orig, chosen, out)
	default:
		res, err = s.storeVariant(storeCtx, variantWrite{
			bucket: bucket, key: key, variantKey: c.key, staleETag: stale[c.key],
			orig: orig, spec: chosen, out: out, cands: cands,
		})
	}
	end(err)
	if err == nil {
		s.known.remember(lookupID(bucket, key, cands), cands, orig.ETag, res)
	}
	return res, err
}

// originalIsSmaller says whether out fails to beat the original by the
// configured margin: the original is then served.
func (s *Service) originalIsSmaller(out Output, orig store.ObjectInfo) bool {
	return float64(len(out.Data)) > float64(orig.Size)*(1-s.cfg.MinSaving)
}

// errAnimated refuses to make a still variant of an animated original
// (for a viewer of no format that keeps the frames).
var errAnimated = errors.New("the original is animated, and a variant would be its first frame alone")

// overloaded explains a wait that ended: the caller's own cancellation, or
// a wait longer than ProcessTimeout, which means the service is overloaded.
func overloaded(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: waited too long for %s (%w)", ErrOverloaded, what, err)
}

// admit takes a place for a job, failing fast when the service is full.
func (s *Service) admit() (*workpool.Ticket, error) {
	t, err := s.pool.Admit()
	if err != nil {
		return nil, fmt.Errorf("%w: %d workers busy and the queue is full", ErrOverloaded, s.pool.Workers())
	}
	return t, nil
}

// holdBuffer reserves memory for n compressed bytes, failing fast.
func (s *Service) holdBuffer(t *workpool.Ticket, n int64) error {
	err := t.HoldBuffer(n)
	switch {
	case errors.Is(err, workpool.ErrTooBig):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	return nil
}

// tracerName names the domain's spans.
const tracerName = "github.com/imgedge/imgedge/server/internal/transform"

// stage starts one step of the work: a trace span (head, fetch, process,
// store) and a timing for the Observer. Call end with the step's error.
func (s *Service) stage(ctx context.Context, name string) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := s.tracer.Start(ctx, name)
	return ctx, func(err error) {
		s.obs.Stage(name, time.Since(start))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
