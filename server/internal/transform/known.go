package transform

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/imgedge/imgedge/server/internal/store"
)

// knownCapacity bounds how many answers knownAnswers holds (a few hundred
// bytes each): the working set of hot images a CDN asks for again within
// the TTL.
const knownCapacity = 16384

// knownAnswers remembers, for a while, which answer a lookup found: a fresh
// variant, or a marker saying the original is smaller. A variant is made
// for one version of its original and never changes while that version
// stands, so a later lookup only has to HEAD the original: the same ETag
// means the same answer, and a new one sends the lookup back to the stored
// variants at once. What it cannot see is a variant deleted from the store
// behind the service's back: for up to the TTL it is still answered.
type knownAnswers struct {
	ttl   time.Duration
	now   func() time.Time
	cache *lru.Cache[string, knownAnswer] // safe for concurrent use
}

type knownAnswer struct {
	sourceETag string
	res        EnsureResult
	expires    time.Time
}

// newKnownAnswers returns a memory of answers kept for ttl; with ttl ≤ 0
// it remembers nothing.
func newKnownAnswers(ttl time.Duration) *knownAnswers {
	if ttl <= 0 {
		return &knownAnswers{}
	}
	cache, err := lru.New[string, knownAnswer](knownCapacity)
	if err != nil {
		panic(err) // only for a capacity ≤ 0
	}
	return &knownAnswers{ttl: ttl, now: time.Now, cache: cache}
}

// get returns what is remembered for a lookup (the answer and the ETag of
// the original it was found for), unless it has expired.
func (k *knownAnswers) get(id string) (knownAnswer, bool) {
	if k.cache == nil {
		return knownAnswer{}, false
	}
	a, ok := k.cache.Get(id)
	if !ok {
		return knownAnswer{}, false
	}
	if !k.now().Before(a.expires) {
		k.cache.Remove(id)
		return knownAnswer{}, false
	}
	return a, true
}

// remember records a lookup's final answer for the original version
// sourceETag. A created variant is remembered as existing.
func (k *knownAnswers) remember(id, sourceETag string, res EnsureResult) {
	if k.cache == nil || sourceETag == "" {
		return
	}
	if res.Outcome == Created {
		res.Outcome = AlreadyExisted
	}
	k.cache.Add(id, knownAnswer{sourceETag: sourceETag, res: res, expires: k.now().Add(k.ttl)})
}

// forget drops what is remembered for a lookup.
func (k *knownAnswers) forget(id string) {
	if k.cache != nil {
		k.cache.Remove(id)
	}
}

// answer is the remembered answer, with what the fresh HEAD of the
// original says about it.
func (a knownAnswer) answer(orig store.ObjectInfo) EnsureResult {
	res := a.res
	res.OriginalSize = orig.Size
	if res.Outcome == OriginalIsSmaller {
		res.Key, res.ContentType, res.Size, res.ETag = orig.Key, orig.ContentType, orig.Size, orig.ETag
	}
	return res
}
