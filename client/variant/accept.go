package variant

import (
	"strconv"
	"strings"
)

// Class is what a viewer decodes, reduced to what changes a negotiated
// format. It is the edge's cache-key dimension and travels on the wire as
// imgedge.v1.FormatClass, whose values it shares.
type Class uint8

// Classes. The zero value says nothing about the viewer: JPEG only.
const (
	ClassUnspecified Class = iota
	ClassJPEG              // neither AVIF nor WebP
	ClassWebP              // WebP, not AVIF
	ClassAVIF              // AVIF (and WebP: every browser that decodes AVIF decodes WebP)
)

var classNames = [...]string{"", "jpeg", "webp", "avif"}

// String returns the class's name ("jpeg", "webp", "avif"), used in cache
// keys and the x-imgedge-format header; "" when unspecified.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// ParseClass parses a class name as String writes it.
func ParseClass(s string) (Class, bool) {
	for i, name := range classNames {
		if i > 0 && strings.EqualFold(s, name) {
			return Class(i), true
		}
	}
	return ClassUnspecified, false
}

// Valid reports whether c is one of the classes above.
func (c Class) Valid() bool { return c <= ClassAVIF }

// accepts reports whether a viewer of class c decodes f.
func (c Class) accepts(f Format) bool {
	switch f {
	case FormatAVIF:
		return c == ClassAVIF
	case FormatWebP:
		return c == ClassAVIF || c == ClassWebP
	}
	return true
}

// Fallbacks lists the classes whose viewers decode part of what c's do,
// most first: where the format negotiated for c cannot be made, what a
// viewer of one of them gets answers c's viewer too.
func (c Class) Fallbacks() []Class {
	switch c {
	case ClassAVIF:
		return []Class{ClassWebP, ClassJPEG}
	case ClassWebP:
		return []Class{ClassJPEG}
	}
	return nil
}

// Negotiation decides which concrete format "auto" becomes for a viewer.
type Negotiation struct {
	AVIF     bool   // offer AVIF to viewers that accept image/avif
	WebP     bool   // offer WebP to viewers that accept image/webp
	Fallback Format // what everyone else gets; JPEG when unspecified
}

// Choose returns AVIF, then WebP, when enabled and accepted, else the fallback.
func (n Negotiation) Choose(c Class) Format {
	return n.Candidates(c)[0]
}

// Candidates lists the formats "best" compares for a viewer, in order of
// preference: AVIF and WebP when enabled and accepted, and always the
// fallback.
func (n Negotiation) Candidates(c Class) []Format {
	var out []Format
	if n.AVIF && c.accepts(FormatAVIF) {
		out = append(out, FormatAVIF)
	}
	if n.WebP && c.accepts(FormatWebP) {
		out = append(out, FormatWebP)
	}
	fallback := n.Fallback
	if !fallback.Concrete() {
		fallback = FormatJPEG
	}
	return append(out, fallback)
}

// ParseAccept reduces an HTTP Accept header to the viewer's class. It is the
// one place a raw Accept header is read. A format counts only when it is
// named explicitly with a non-zero q value: browsers that can decode AVIF or
// WebP say so, and wildcards promise nothing.
func ParseAccept(header string) Class {
	var avif, webp bool
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
			avif = true
		} else {
			webp = true
		}
	}
	switch {
	case avif:
		return ClassAVIF
	case webp:
		return ClassWebP
	}
	return ClassJPEG
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
