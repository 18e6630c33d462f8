// Package store holds what every object store shares: object metadata, the
// errors stores report, and bucket-name validation. The stores themselves live
// in the subpackages local (the embedded default) and s3.
package store

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Errors every store reports (wrapped, with context). Callers test with errors.Is.
var (
	// ErrNotFound: no object at that key.
	ErrNotFound = errors.New("object not found")
	// ErrBucketNotFound: the bucket does not exist.
	ErrBucketNotFound = errors.New("bucket not found")
	// ErrForbidden: the object exists but this store may not serve it
	// (for example, a link leading outside the store).
	ErrForbidden = errors.New("object not readable")
	// ErrPreconditionFailed: a conditional write lost (someone else wrote first).
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrTooLarge: the object is larger than the caller's limit; nothing was
	// read. The transform package reuses it for every size limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable: the store could not be reached or failed transiently.
	ErrUnavailable = errors.New("store unavailable")
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ETag         string // quoted, as S3 reports it
	ContentType  string
	LastModified time.Time
	Metadata     map[string]string // user metadata, lower-case keys; read-only (a store may share it between calls)
}

// PutOptions qualify a write.
type PutOptions struct {
	ContentType string
	// CacheControl, when set, is stored as the object's Cache-Control.
	CacheControl string
	Metadata     map[string]string
	// IfNoneMatch makes the write succeed only if no object exists at the key.
	IfNoneMatch bool
	// IfMatch, when set, makes the write succeed only if the current object
	// has this ETag.
	IfMatch string
}

// bucketName follows S3's naming rules for general purpose buckets.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ValidateBucket checks a bucket name against S3's rules, which also makes it
// safe as a single directory name.
func ValidateBucket(name string) error {
	if !bucketName.MatchString(name) {
		return fmt.Errorf("invalid bucket name %q: want 3–63 lower-case letters, digits, dots or hyphens", name)
	}
	return nil
}
