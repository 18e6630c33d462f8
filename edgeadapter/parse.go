package edgeadapter

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/edgeadapter/cloudfront"
)

// errSkip marks requests the adapter leaves alone without calling the
// service: not an image, not under a handled prefix, a processed key, a
// query outside the allow-list.
var errSkip = errors.New("not handled")

// KeyFromURI decodes a CloudFront URI ("/photos/%EA%B3%A0%20a.jpg") into an
// object key ("photos/고 a.jpg"). A "+" stays a plus sign: in a path, as in
// S3's REST API, only %20 is a space.
func KeyFromURI(uri string) (string, error) {
	if !strings.HasPrefix(uri, "/") {
		return "", fmt.Errorf("%w: uri %q does not start with a slash", errSkip, uri)
	}
	key, err := url.PathUnescape(uri[1:])
	if err != nil {
		return "", fmt.Errorf("%w: uri %q: %w", errSkip, uri, err)
	}
	if err := variant.ValidateKey(key); err != nil {
		return "", fmt.Errorf("%w: %w", errSkip, err)
	}
	return key, nil
}

// URIFromKey percent-encodes a key into a URI path, segment by segment.
func URIFromKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/" + strings.Join(segs, "/")
}

// variantFromQuery builds the requested variant from the query string,
// bounded by the allow-list: a viewer cannot make the service create
// unbounded variants. Anything outside the list is errSkip.
func (c Config) variantFromQuery(rawQuery string) (variant.Request, error) {
	var none variant.Request
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return none, fmt.Errorf("%w: query %q: %w", errSkip, rawQuery, err)
	}
	req := variant.Request{Preset: c.DefaultPreset}
	format := c.DefaultFormat

	if v := first(q, "preset"); v != "" {
		if !slices.Contains(c.Presets, v) {
			return none, fmt.Errorf("%w: preset %q is not allowed", errSkip, v)
		}
		req.Preset = v
	}
	for _, dim := range []struct {
		name string
		dst  *int
	}{{"w", &req.Override.Width}, {"h", &req.Override.Height}} {
		v := first(q, dim.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return none, fmt.Errorf("%w: %s=%q is not a positive number", errSkip, dim.name, v)
		}
		*dim.dst = c.snap(n)
	}
	if v := first(q, "q"); v == "auto" {
		req.Override.AutoQuality = true
	} else if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return none, fmt.Errorf("%w: q=%q is not a positive number", errSkip, v)
		}
		req.Override.Quality = c.boundQuality(n)
	}
	if v := first(q, "format"); v != "" {
		if !slices.Contains(c.Formats, strings.ToLower(v)) {
			return none, fmt.Errorf("%w: format %q is not allowed", errSkip, v)
		}
		format = v
	}
	if v := first(q, "fit"); v != "" {
		if req.Override.Fit, err = variant.ParseFit(v); err != nil {
			return none, fmt.Errorf("%w: %w", errSkip, err)
		}
	}
	if req.Override.Format, err = variant.ParseFormat(format); err != nil {
		return none, fmt.Errorf("%w: %w", errSkip, err)
	}
	return req, nil
}

// queryAliases are the query parameters the adapter reads: each canonical
// name first, then its aliases. The viewer-request function is generated
// from the same table (QueryParams).
var queryAliases = [][]string{{"w", "width"}, {"h", "height"}, {"q", "quality"}, {"preset"}, {"format", "f"}, {"fit"}}

// QueryParams maps every query parameter name the adapter reads to its
// canonical name.
var QueryParams = func() map[string]string {
	m := map[string]string{}
	for _, names := range queryAliases {
		for _, n := range names {
			m[n] = names[0]
		}
	}
	return m
}()

// first returns the value of the canonical parameter name or, failing
// that, of its first alias present.
func first(q url.Values, canonical string) string {
	for _, names := range queryAliases {
		if names[0] != canonical {
			continue
		}
		for _, n := range names {
			if v := q.Get(n); v != "" {
				return v
			}
		}
	}
	return ""
}

// snap rounds a dimension up to the next breakpoint, capped at the largest.
func (c Config) snap(n int) int {
	for _, b := range c.Breakpoints {
		if n <= b {
			return b
		}
	}
	return c.Breakpoints[len(c.Breakpoints)-1]
}

// boundQuality clamps a quality into the bounds and rounds it to the step.
func (c Config) boundQuality(n int) int {
	n = max(c.Quality.Min, min(c.Quality.Max, n))
	n = (n + c.Quality.Step/2) / c.Quality.Step * c.Quality.Step
	return max(c.Quality.Min, min(c.Quality.Max, n))
}

// handles reports whether a key is an image under a handled prefix.
func (c Config) handles(uri, key string) error {
	if strings.HasPrefix(key, c.ProcessedPrefix) {
		return fmt.Errorf("%w: %q is already a processed variant", errSkip, key)
	}
	if !slices.Contains(c.Extensions, strings.ToLower(path.Ext(key))) {
		return fmt.Errorf("%w: extension of %q is not handled", errSkip, key)
	}
	for _, p := range c.PathPrefixes {
		if strings.HasPrefix(uri, p) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is outside the handled prefixes", errSkip, uri)
}

// HeaderFormatClass is set by the viewer-request CloudFront Function to the
// viewer's format class ("avif", "webp" or "jpeg") and is part of the cache
// key, so the raw Accept header need not be.
const HeaderFormatClass = "x-imgedge-format"

// viewerClass is the viewer's format class: the one the viewer-request
// function put in HeaderFormatClass (the cache key's), or else the Accept
// header's.
func viewerClass(h cloudfront.Headers) variant.Class {
	if c, ok := variant.ParseClass(h.Get(HeaderFormatClass)); ok {
		return c
	}
	return variant.ParseAccept(h.Get("accept"))
}
