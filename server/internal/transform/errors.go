package transform

import (
	"errors"

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
