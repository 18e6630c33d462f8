package variant

import (
	"strconv"
	"strings"
)

// Negotiation decides which concrete format "auto" becomes for a viewer.
type Negotiation struct {
	AVIF     bool   // offer AVIF to viewers that accept image/avif
	WebP     bool   // offer WebP to viewers that accept image/webp
	Fallback Format // what everyone else gets; JPEG when unspecified
}

// Choose returns AVIF, then WebP, when enabled and accepted, else the fallback.
func (n Negotiation) Choose(accept string) Format {
	a := ParseAccept(accept)
	switch {
	case n.AVIF && a.AVIF:
		return FormatAVIF
	case n.WebP && a.WebP:
		return FormatWebP
	case n.Fallback.Concrete():
		return n.Fallback
	default:
		return FormatJPEG
	}
}

// Candidates lists the formats "best" compares for a viewer: AVIF and WebP
// when enabled and accepted, and always the fallback.
func (n Negotiation) Candidates(accept string) []Format {
	a := ParseAccept(accept)
	var out []Format
	if n.AVIF && a.AVIF {
		out = append(out, FormatAVIF)
	}
	if n.WebP && a.WebP {
		out = append(out, FormatWebP)
	}
	fallback := n.Fallback
	if !fallback.Concrete() {
		fallback = FormatJPEG
	}
	return append(out, fallback)
}

// Accepted is what an Accept header says about the modern image formats.
type Accepted struct {
	AVIF bool
	WebP bool
}

// Class is a short, stable name for the format class, usable in cache keys:
// "avif" (AVIF and WebP), "webp", or "jpeg".
func (a Accepted) Class() string {
	switch {
	case a.AVIF:
		return "avif"
	case a.WebP:
		return "webp"
	default:
		return "jpeg"
	}
}

// ParseAccept reads an HTTP Accept header. A format counts only when it is
// named explicitly with a non-zero q value: browsers that can decode AVIF or
// WebP say so, and wildcards promise nothing.
func ParseAccept(header string) Accepted {
	var a Accepted
	for part := range strings.SplitSeq(header, ",") {
		mediaRange, params, _ := strings.Cut(part, ";")
		mediaRange = strings.ToLower(strings.TrimSpace(mediaRange))
		if mediaRange != "image/avif" && mediaRange != "image/webp" {
			continue
		}
		if !acceptable(params) {
			continue
		}
		if mediaRange == "image/avif" {
			a.AVIF = true
		} else {
			a.WebP = true
		}
	}
	return a
}

// acceptable reports whether the media-range parameters leave q above zero.
func acceptable(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		return err == nil && q > 0
	}
	return true
}
