package transform

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

// markerSuffix names the object that remembers "the original is smaller"
// (or which variant stands for one the service cannot make): it sits
// beside the variant's key and never ends in an image extension.
const markerSuffix = ".keep-original"

// keptRulesGeneration is the generation of the rules that keep an original
// no variant stands for. A marker with a reason (MetaKept) decided under
// other rules is decided again: the first generation kept every
// animation, where the second makes an animated WebP for a WebP or AVIF
// viewer, so a deployment upgraded over its markers would otherwise serve
// those originals until they changed.
const keptRulesGeneration = "2"

// keptRules are the rules a kept marker is decided under: the generation,
// and the pixel limit an animation's frames are held to together, which
// an operator may raise (Limits.MaxSourcePixels): an animation kept under
// a lower limit is then decided again, and made.
func (s *Service) keptRules() string {
	return keptRulesGeneration + "/" + strconv.FormatInt(s.cfg.Limits.MaxSourcePixels, 10)
}

// fallbackRules are the rules a served-by marker is decided under: the
// kept rules and the pixel memory a job may hold, so that a negotiated
// AVIF the budget could not afford is made once an operator raises it.
func (s *Service) fallbackRules() string {
	return s.keptRules() + "/" + strconv.FormatInt(s.pool.PixelBudget(), 10)
}

// variantWrite is a variant to store, with what decides how.
type variantWrite struct {
	bucket, key string // the original
	variantKey  string
	staleETag   string // the stale variant to replace, if any
	orig        store.ObjectInfo
	spec        variant.Spec // resolved, with the quality chosen
	out         Output
	cands       []candidate // every format compared, for "best"
}

// variantMetadata is what a variant's metadata says about its encoding.
func variantMetadata(out Output, spec variant.Spec) map[string]string {
	m := map[string]string{
		MetaWidth:   strconv.Itoa(out.Width),
		MetaHeight:  strconv.Itoa(out.Height),
		MetaQuality: strconv.Itoa(spec.Quality),
	}
	if out.Score > 0 {
		m[MetaScore] = strconv.FormatFloat(out.Score, 'f', 1, 64)
	}
	if spec.FullChroma {
		m[MetaChroma] = "full"
	}
	return m
}

// storeVariant writes the variant with a condition, so that concurrent
// writers (other replicas) cannot both win: create-if-absent for a new key,
// replace-if-unchanged for a stale one.
func (s *Service) storeVariant(ctx context.Context, w variantWrite) (EnsureResult, error) {
	opts := store.PutOptions{
		ContentType:  w.spec.Format.ContentType(),
		CacheControl: s.cfg.VariantCacheControl,
		Metadata:     variantMetadata(w.out, w.spec),
	}
	opts.Metadata[MetaSourceETag] = w.orig.ETag
	if b := bestOf(w.cands); b != "" {
		opts.Metadata[MetaBestOf] = b
	}
	if w.staleETag == "" {
		opts.IfNoneMatch = true
	} else {
		opts.IfMatch = w.staleETag
	}
	info, err := s.store.Put(ctx, w.bucket, w.variantKey, w.out.Data, opts)
	if errors.Is(err, store.ErrPreconditionFailed) {
		// Another writer won the race; serve what it stored if it is fresh.
		if res, done, _, lerr := s.lookup(ctx, w.bucket, w.key, w.cands); lerr == nil && done {
			return res, nil
		}
		return EnsureResult{}, fmt.Errorf("%w: %s: %w", ErrConflict, w.variantKey, err)
	}
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing variant: %w", err)
	}
	info.Size = int64(len(w.out.Data))
	info.Metadata = opts.Metadata
	return variantResult(Created, w.orig, info, w.variantKey, w.spec), nil
}

// standIn stores c, the fallback that stands for the variant at vkey which
// the service cannot make, as a viewer of c's format gets it (chosen
// among the same candidates, at its own key), unless a fresh one is there
// already; then the marker beside vkey that sends later lookups to it.
func (s *Service) standIn(ctx context.Context, bucket, key, vkey string, c candidate, among []candidate, orig store.ObjectInfo, spec variant.Spec, out Output) (EnsureResult, error) {
	res, done, stale, err := s.lookup(ctx, bucket, key, among)
	if err != nil {
		return EnsureResult{}, err
	}
	if !done {
		res, err = s.storeVariant(ctx, variantWrite{
			bucket: bucket, key: key, variantKey: c.key, staleETag: stale[c.key],
			orig: orig, spec: spec, out: out, cands: among,
		})
		if err != nil {
			return EnsureResult{}, err
		}
	}
	if res.Key == orig.Key {
		return res, nil // the fallback's own marker: its original is served
	}
	_, err = s.store.Put(ctx, bucket, vkey+markerSuffix, nil, store.PutOptions{
		ContentType: "application/octet-stream",
		Metadata:    map[string]string{MetaSourceETag: orig.ETag, MetaServedBy: res.Key, MetaKeptRules: s.fallbackRules()},
	})
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing the served-by marker: %w", err)
	}
	return res, nil
}

// keptReason says why an original is served rather than a variant: ""
// when no variant is smaller by the configured margin (or could be),
// "animated" when no variant can stand for it.
type keptReason string

// outcome is what a call answers for an original kept for this reason.
func (r keptReason) outcome() Outcome {
	if r == "" {
		return OriginalIsSmaller
	}
	return OriginalKept
}

// keptBecause says whether err means "serve the original", and why.
func keptBecause(err error) (keptReason, bool) {
	switch {
	case errors.Is(err, errNotWorthIt):
		return "", true
	case errors.Is(err, errAnimated):
		return "animated", true
	}
	return "", false
}

// keepOriginal remembers that the original is the answer, why, and under
// which rules it was decided ("": it holds until the original changes; see
// decidedNow).
func (s *Service) keepOriginal(ctx context.Context, bucket, vkey string, orig store.ObjectInfo, spec variant.Spec, variantSize int, why keptReason, rules string) (EnsureResult, error) {
	meta := map[string]string{
		MetaSourceETag: orig.ETag,
		MetaVariant:    strconv.Itoa(variantSize),
	}
	if why != "" {
		meta[MetaKept] = string(why)
	}
	if rules != "" {
		meta[MetaKeptRules] = rules
	}
	_, err := s.store.Put(ctx, bucket, vkey+markerSuffix, nil, store.PutOptions{
		ContentType: "application/octet-stream",
		Metadata:    meta,
	})
	if err != nil {
		return EnsureResult{}, fmt.Errorf("storing the keep-original marker: %w", err)
	}
	return originalResult(why.outcome(), orig, vkey, spec), nil
}
