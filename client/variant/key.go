package variant

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// DefaultPrefix is where variants are stored unless configured otherwise.
const DefaultPrefix = "ProcessedImages/"

// MaxKeyBytes is S3's limit on a key's length.
const MaxKeyBytes = 1024

// ErrBadKey is wrapped by every error about an object key that is refused.
var ErrBadKey = errors.New("invalid object key")

// ValidateKey checks that key is a safe, relative object key: valid UTF-8,
// no control characters, no backslashes, no empty, "." or ".." segments, no
// leading or trailing slash, at most MaxKeyBytes bytes. Keys that pass can be
// joined under a directory without escaping it.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrBadKey)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: %d bytes long, the limit is %d", ErrBadKey, len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrBadKey)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w: %q starts with a slash", ErrBadKey, key)
	case strings.HasSuffix(key, "/"):
		return fmt.Errorf("%w: %q ends with a slash", ErrBadKey, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: %q contains the character %U", ErrBadKey, key, r)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: %q has an empty path segment", ErrBadKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q path segment", ErrBadKey, key, seg)
		}
	}
	return nil
}

// ValidatePrefix checks a processed-variants prefix such as "ProcessedImages/".
func ValidatePrefix(prefix string) error {
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("prefix %q must end with a slash", prefix)
	}
	if err := ValidateKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return nil
}

// Key returns the key under which the resolved spec's variant of source is
// stored: prefix + canonical + "/" + source + "." + extension.
func Key(prefix, source string, s Spec) string {
	return prefix + s.Canonical() + "/" + source + "." + s.Format.Extension()
}

// ParseKey is the inverse of Key: it returns the source key and the resolved
// spec of a variant key under prefix.
func ParseKey(prefix, key string) (source string, s Spec, err error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", Spec{}, fmt.Errorf("%w: %q is not under %q", ErrBadKey, key, prefix)
	}
	canonical, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return "", Spec{}, fmt.Errorf("%w: %q has no source key after the variant", ErrBadKey, key)
	}
	if s, err = ParseCanonical(canonical); err != nil {
		return "", Spec{}, err
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return "", Spec{}, fmt.Errorf("%w: %q has no format extension", ErrBadKey, key)
	}
	f, ok := formatByExtension(rest[dot+1:])
	if !ok {
		return "", Spec{}, fmt.Errorf("%w: %q has an unknown format extension", ErrBadKey, key)
	}
	s.Format = f
	if !f.Lossy() && s.Quality != 0 || f.Lossy() && s.Quality == 0 && !s.AutoQuality || f != FormatJPEG && s.Progressive {
		return "", Spec{}, fmt.Errorf("%w: %q is not a resolved %s variant", ErrBadKey, key, f)
	}
	source = rest[:dot]
	if err := ValidateKey(source); err != nil {
		return "", Spec{}, err
	}
	return source, s, nil
}
