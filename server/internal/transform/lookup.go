package transform

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/sync/singleflight"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

// sharedLookup is lookup, shared by identical concurrent calls: a caller
// that arrives while one is in flight takes its answer, as a CDN collapses
// concurrent requests for one object, so the answer may be one round of
// HEADs older than the call. The shared lookup runs on its own clock (one
// caller giving up does not fail the others); each caller still leaves
// when its own context ends.
func (s *Service) sharedLookup(ctx context.Context, bucket, key string, cands []candidate) (lookupAnswer, error) {
	id := lookupID(bucket, key, cands)
	// singleflight's DoChan, on a kept goroutine (see lookupRunners).
	ch := make(chan singleflight.Result, 1)
	s.runners.Go(func() {
		v, err, shared := s.lookups.Do(id, func() (answer any, err error) {
			defer caught(&err)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProcessTimeout)
			defer cancel()
			res, done, stale, err := s.lookup(ctx, bucket, key, cands)
			return lookupAnswer{res, done, stale}, err
		})
		ch <- singleflight.Result{Val: v, Err: err, Shared: shared}
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return lookupAnswer{}, r.Err
		}
		return r.Val.(lookupAnswer), nil
	case <-ctx.Done():
		return lookupAnswer{}, ctx.Err()
	}
}

// lookupAnswer is what a lookup found: the answer when done, else the
// original's size and the stale variants' ETags (see lookup). Every caller
// that shared the lookup holds the same answer: it is read, never changed.
type lookupAnswer struct {
	res   EnsureResult
	done  bool
	stale map[string]string
}

// lookupRunners bounds the goroutines kept to run lookups and their HEADs:
// a hot hit's HEAD goes through the S3 SDK's deep middleware, and on a
// fresh goroutine each time, growing its stack took 15 % of the hit's CPU
// (see warmgo). Lookups beyond this many at once run on fresh goroutines.
const lookupRunners = 64

// lookupID names one lookup: the original and the candidates it compares.
func lookupID(bucket, key string, cands []candidate) string {
	id := bucket + "\x00" + key
	for _, c := range cands {
		id += "\x00" + c.key
	}
	return id
}

// headResult is one HEAD's answer.
type headResult struct {
	info store.ObjectInfo
	err  error
}

// headVariants HEADs every candidate concurrently; wait returns their
// answers in the candidates' order.
func (s *Service) headVariants(ctx context.Context, bucket string, cands []candidate) (wait func() []headResult) {
	heads := make([]chan headResult, len(cands))
	for i, c := range cands {
		heads[i] = make(chan headResult, 1)
		s.runners.Go(func() {
			var r headResult
			func() {
				defer caught(&r.err)
				r.info, r.err = s.store.Head(ctx, bucket, c.key)
			}()
			heads[i] <- r
		})
	}
	return func() []headResult {
		results := make([]headResult, len(cands))
		for i := range heads {
			results[i] = <-heads[i]
		}
		return results
	}
}

// lookup is the hot path: HEAD the original and every candidate variant
// concurrently, then the marker if needed. A fresh variant answers (the
// smallest, when several candidates exist). done reports whether res is the
// final answer; if not, stale maps candidate keys to the ETags of stale
// variants there.
//
// A final answer is remembered (see knownAnswers): while it is, the same
// lookup HEADs only the original, and the variants again only if the
// original has changed. So is a failure the original caused, which the
// lookup returns again while the original is the same.
func (s *Service) lookup(ctx context.Context, bucket, key string, cands []candidate) (res EnsureResult, done bool, stale map[string]string, err error) {
	ctx, end := s.stage(ctx, "head")
	defer func() { end(err) }()

	id := lookupID(bucket, key, cands)
	known, isKnown := s.known.get(id)
	remembered := false
	defer func() { s.obs.Lookup(remembered) }()
	var wait func() []headResult
	if !isKnown {
		wait = s.headVariants(ctx, bucket, cands)
	}
	orig, err := s.store.Head(ctx, bucket, key)
	if isKnown && err == nil {
		if orig.ETag == known.sourceETag {
			remembered = true
			if known.failure != nil {
				return EnsureResult{}, false, nil, known.failure
			}
			return known.answer(orig, cands), true, nil, nil
		}
		s.known.forget(id)
		wait = s.headVariants(ctx, bucket, cands)
	}
	var results []headResult
	if wait != nil {
		results = wait()
	}
	if err != nil {
		return EnsureResult{}, false, nil, fmt.Errorf("original: %w", err)
	}
	defer func() {
		if done && err == nil {
			s.known.remember(id, cands, orig.ETag, res)
		}
	}()
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
	case err == nil && marker.Metadata[MetaSourceETag] == orig.ETag && s.decidedNow(marker):
		if by := marker.Metadata[MetaServedBy]; by != "" {
			res, done, err := s.servedBy(ctx, bucket, orig, cands, by)
			return res, done, stale, err
		}
		return originalResult(keptReason(marker.Metadata[MetaKept]).outcome(), orig, cands[0].key, cands[0].spec), true, nil, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return EnsureResult{}, false, nil, fmt.Errorf("marker: %w", err)
	}
	return EnsureResult{OriginalSize: orig.Size}, false, stale, nil
}

// decidedNow says whether a marker still holds under the rules in force:
// "no variant is smaller" always does (it is decided again when the
// original changes); a kept reason only under keptRules; a decision made
// on fallbacks (served by one, or beaten by none) only under fallbackRules.
func (s *Service) decidedNow(marker store.ObjectInfo) bool {
	switch rules := marker.Metadata[MetaKeptRules]; {
	case marker.Metadata[MetaKept] != "":
		return rules == s.keptRules()
	case rules != "":
		return rules == s.fallbackRules()
	}
	return true
}

// servedBy answers for cands, whose first the service could not make,
// with the variant its marker names (key), when that is still one of the
// first's fallbacks and stored fresh for orig, chosen among the same
// candidates; otherwise the lookup is not done, and the build decides
// again.
func (s *Service) servedBy(ctx context.Context, bucket string, orig store.ObjectInfo, cands []candidate, key string) (EnsureResult, bool, error) {
	notDone := EnsureResult{OriginalSize: orig.Size}
	for _, group := range cands[0].fallbackGroups() {
		i := slices.IndexFunc(group, func(c candidate) bool { return c.key == key })
		if i < 0 {
			continue
		}
		v, err := s.store.Head(ctx, bucket, key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return notDone, false, nil
		case err != nil:
			return EnsureResult{}, false, fmt.Errorf("variant standing in: %w", err)
		case v.Metadata[MetaSourceETag] != orig.ETag || v.Metadata[MetaBestOf] != bestOf(group):
			return notDone, false, nil
		}
		return variantResult(AlreadyExisted, orig, v, key, group[i].spec), true, nil
	}
	return notDone, false, nil
}

func variantResult(o Outcome, orig, v store.ObjectInfo, vkey string, spec variant.Spec) EnsureResult {
	w, _ := strconv.Atoi(v.Metadata[MetaWidth])
	h, _ := strconv.Atoi(v.Metadata[MetaHeight])
	var score float64
	if q, err := strconv.Atoi(v.Metadata[MetaQuality]); err == nil && spec.AutoQuality {
		spec.Quality = q // the quality the search chose
		spec.FullChroma = v.Metadata[MetaChroma] == "full"
		if s, err := strconv.ParseFloat(v.Metadata[MetaScore], 64); err == nil && s > 0 && s <= 100 {
			score = s
		}
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
		Score:        score,
	}
}

// originalResult answers with the original: o is OriginalIsSmaller or
// OriginalKept.
func originalResult(o Outcome, orig store.ObjectInfo, vkey string, spec variant.Spec) EnsureResult {
	return EnsureResult{
		Outcome:      o,
		Key:          orig.Key,
		ContentType:  orig.ContentType,
		Size:         orig.Size,
		ETag:         orig.ETag,
		OriginalSize: orig.Size,
		VariantKey:   vkey,
		Spec:         spec,
	}
}
