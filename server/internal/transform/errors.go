package transform

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/imgedge/imgedge/server/internal/store"
)

// Domain errors. Every error the service returns wraps one of these, or one
// of the store package's or the variant package's, so the gRPC layer can map
// it to a status code in one place.
var (
	// ErrInvalidArgument: the request is malformed (bad bucket, unknown preset, ...).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnsupportedImage: the bytes are not an image this service decodes.
	ErrUnsupportedImage = errors.New("unsupported or undecodable image")
	// ErrTooLargeForFormat: the output would be larger than its format can
	// store (16,383 pixels a side for WebP, for one); a smaller size or
	// another format can hold it. "best" leaves such a format out.
	ErrTooLargeForFormat = errors.New("too large for the format")
	// ErrTooLarge: the source exceeds a byte, pixel or memory limit. It is
	// the store's error of the same name, so one value answers every "too
	// large", whichever layer found it.
	ErrTooLarge = store.ErrTooLarge
	// ErrKeyNotAllowed: the key is well-formed but may not be processed
	// (for example, it is itself a processed variant).
	ErrKeyNotAllowed = errors.New("key not allowed")
	// ErrBucketNotAllowed: the bucket is not in the configured allow-list.
	ErrBucketNotAllowed = errors.New("bucket not allowed")
	// ErrOverloaded: every worker is busy and the wait queue is full.
	ErrOverloaded = errors.New("overloaded")
	// ErrCannotScore: the image is too small for the perceptual metric, so
	// auto-quality falls back to the format's default quality.
	ErrCannotScore = errors.New("too small to score")
	// ErrConflict: a concurrent writer stored something unexpected; retrying helps.
	ErrConflict = errors.New("concurrent write conflict")
)

// caught turns a panic in the function that defers it into *err, with the
// panic's value and stack: an internal error, which the gRPC layer logs in
// full and answers as Internal. Builds and lookups run on goroutines of
// their own (shared by concurrent callers), beyond the gRPC layer's
// recovery, where singleflight re-panics past any recover and so would
// stop the process: a bug that one image triggers must fail the calls for
// that image, not every call in flight. The work's own defers (admission,
// worker, pixels) have run by the time it recovers.
func caught(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
	}
}
