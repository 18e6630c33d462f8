package transform

import (
	"crypto/sha256"
	"errors"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

// knownCapacity bounds how many answers knownAnswers holds: the working
// set of hot images a CDN asks for again within the TTL. An answer takes
// ~0.3 KB however long its keys are (~5 MB when full); a remembered
// failure also holds its message, which names the original's key (at most
// 1 KB more).
const knownCapacity = 16384

// knownAnswers remembers, for a while, which answer a lookup found: a fresh
// variant, or a marker saying the original is smaller. A variant is made
// for one version of its original and never changes while that version
// stands, so a later lookup only has to HEAD the original: the same ETag
// means the same answer, and a new one sends the lookup back to the stored
// variants at once. What it cannot see is a variant deleted from the store
// behind the service's back: for up to the TTL it is still answered.
//
// It also remembers a build that failed because of the original itself (it
// cannot be decoded, or it is past a limit): that version fails the same
// way on every call, so a later one gets the same error after the HEAD,
// without fetching and decoding the original again.
type knownAnswers struct {
	ttl   time.Duration
	now   func() time.Time
	cache *lru.Cache[[sha256.Size]byte, knownAnswer] // safe for concurrent use
}

// knownAnswer is an answer in a form whose size does not grow with the
// keys: which candidate answered, and what its HEAD said. The keys come
// back from the lookup that asks again.
type knownAnswer struct {
	sourceETag string  // the original's ETag the answer was found for
	outcome    Outcome // AlreadyExisted, OriginalIsSmaller or OriginalKept
	cand       int     // the answering variant's place in servable(cands) (the first for a marker)
	spec       variant.Spec
	size       int64
	etag       string
	width      int
	height     int
	score      float64
	// failure, when set, is the error building from that version met; the
	// answer's fields above are then unset.
	failure error
	expires time.Time
}

// newKnownAnswers returns a memory of answers kept for ttl; with ttl ≤ 0
// it remembers nothing.
func newKnownAnswers(ttl time.Duration) *knownAnswers {
	if ttl <= 0 {
		return &knownAnswers{}
	}
	cache, err := lru.New[[sha256.Size]byte, knownAnswer](knownCapacity)
	if err != nil {
		panic(err) // only for a capacity ≤ 0
	}
	return &knownAnswers{ttl: ttl, now: time.Now, cache: cache}
}

// enabled reports whether anything is remembered (a TTL above 0).
func (k *knownAnswers) enabled() bool { return k.cache != nil }

// get returns what is remembered for a lookup (see lookupID), unless it
// has expired.
func (k *knownAnswers) get(id string) (knownAnswer, bool) {
	if k.cache == nil {
		return knownAnswer{}, false
	}
	key := sha256.Sum256([]byte(id))
	a, ok := k.cache.Get(key)
	if !ok {
		return knownAnswer{}, false
	}
	if !k.now().Before(a.expires) {
		k.cache.Remove(key)
		return knownAnswer{}, false
	}
	return a, true
}

// remember records a lookup's final answer, res, found among cands for
// the original version sourceETag. A created variant is remembered as
// existing.
func (k *knownAnswers) remember(id string, cands []candidate, sourceETag string, res EnsureResult) {
	if k.cache == nil || sourceETag == "" {
		return
	}
	a := knownAnswer{
		sourceETag: sourceETag, outcome: res.Outcome, cand: -1, spec: res.Spec,
		size: res.Size, etag: res.ETag, width: res.Width, height: res.Height, score: res.Score,
		expires: k.now().Add(k.ttl),
	}
	for i, c := range servable(cands) {
		if c.key == res.VariantKey {
			a.cand = i
			break
		}
	}
	switch {
	case a.cand < 0:
		return
	case a.outcome == Created:
		a.outcome = AlreadyExisted
	case a.outcome != AlreadyExisted && a.outcome != OriginalIsSmaller && a.outcome != OriginalKept:
		return
	}
	k.cache.Add(sha256.Sum256([]byte(id)), a)
}

// rememberFailure records that building from the original version
// sourceETag failed with err, when the original is the cause (see
// causedByTheOriginal). Other failures (a timeout, a full queue, the
// store) may pass on the next call, and are not kept.
func (k *knownAnswers) rememberFailure(id, sourceETag string, err error) {
	if k.cache == nil || sourceETag == "" || !causedByTheOriginal(err) {
		return
	}
	k.cache.Add(sha256.Sum256([]byte(id)), knownAnswer{sourceETag: sourceETag, failure: err, expires: k.now().Add(k.ttl)})
}

// causedByTheOriginal reports whether a build's error comes from the
// original's bytes and the service's configuration alone: a damaged or
// unsupported image, one past the pixel, byte or memory limits, or an
// output past its format's size.
func causedByTheOriginal(err error) bool {
	return errors.Is(err, ErrUnsupportedImage) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTooLargeForFormat)
}

// forget drops what is remembered for a lookup.
func (k *knownAnswers) forget(id string) {
	if k.cache != nil {
		k.cache.Remove(sha256.Sum256([]byte(id)))
	}
}

// answer is the remembered answer to the lookup of cands, with what the
// fresh HEAD of the original says about it.
func (a knownAnswer) answer(orig store.ObjectInfo, cands []candidate) EnsureResult {
	var c candidate
	for i, s := range servable(cands) {
		if i == a.cand {
			c = s
			break
		}
	}
	if a.outcome != AlreadyExisted {
		return originalResult(a.outcome, orig, c.key, c.spec)
	}
	return EnsureResult{
		Outcome:      AlreadyExisted,
		Key:          c.key,
		ContentType:  a.spec.Format.ContentType(),
		Size:         a.size,
		ETag:         a.etag,
		OriginalSize: orig.Size,
		VariantKey:   c.key,
		Spec:         a.spec,
		Width:        a.width,
		Height:       a.height,
		Score:        a.score,
	}
}
