package transform

import (
	"fmt"
	"iter"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/imgedge/imgedge/client/variant"
)

// candidate is one variant EnsureVariant may store: a resolved spec with a
// concrete format, and its key. "best" has one per accepted format, and a
// request whose formats cannot keep alpha one more, the PNG that answers
// for a translucent image (forTranslucent).
type candidate struct {
	spec           variant.Spec
	key            string
	forTranslucent bool
	// fallbacks, on a negotiated format's first candidate, says what
	// answers in its place when the service cannot make it (see
	// fallbackGroups); nil for none.
	fallbacks *fallbacks
}

// fallbacks are the candidates that answer for a negotiated format the
// service cannot make (an AVIF past its format's size or the memory
// budget), in order: those a viewer that decodes less gets, with their
// keys (choices.fallbacks). They are made on first use: most calls are
// hits that never need them.
type fallbacks struct {
	once   sync.Once
	make   func() [][]candidate
	groups [][]candidate
}

// fallbackGroups is c's fallbacks, made on the first call.
func (c candidate) fallbackGroups() [][]candidate {
	if c.fallbacks == nil {
		return nil
	}
	c.fallbacks.once.Do(func() { c.fallbacks.groups = c.fallbacks.make() })
	return c.fallbacks.groups
}

// servable is every variant that may answer for cands: the candidates,
// then the first's fallbacks' (made only when a candidate does not do).
func servable(cands []candidate) iter.Seq2[int, candidate] {
	return func(yield func(int, candidate) bool) {
		for i, c := range cands {
			if !yield(i, c) {
				return
			}
		}
		i := len(cands)
		for _, group := range cands[0].fallbackGroups() {
			for _, c := range group {
				if !yield(i, c) {
					return
				}
				i++
			}
		}
	}
}

// answering finds the candidate in format f, among cands and then the
// first's fallbacks, with the candidates it was chosen among (cands, or
// a fallback's), and whether it is a fallback.
func answering(cands []candidate, f variant.Format) (c candidate, among []candidate, fallback bool) {
	for i, group := range append([][]candidate{cands}, cands[0].fallbackGroups()...) {
		for _, c := range group {
			if c.spec.Format == f {
				return c, group, i > 0
			}
		}
	}
	return cands[0], cands, false
}

// bestOf names the formats a choice was made among ("" for one candidate):
// a stored variant answers a request with several candidates only if it
// was chosen among the same formats, so a JPEG made for a JPEG-only viewer
// never stands in for the WebP a WebP viewer should get, nor a JPEG made
// flattened (asked for by name) for the PNG a translucent image gets.
func bestOf(cands []candidate) string {
	if len(cands) < 2 {
		return ""
	}
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.spec.Format.String()
	}
	return strings.Join(names, ",")
}

// candidates resolves a requested variant of source into the variants to
// consider, with their keys. A GIF (by its key, which the edge sees too)
// is negotiated for an AVIF viewer as for a viewer of WebP: most GIFs are
// animations, which WebP keeps and AVIF, as libvips saves it, does not.
func (s *Service) candidates(source string, r variant.Request) ([]candidate, error) {
	if r.Viewer == variant.ClassAVIF && strings.EqualFold(path.Ext(source), ".gif") {
		r.Viewer = variant.ClassWebP
	}
	ch, err := s.cfg.resolve(r)
	if err != nil {
		return nil, err
	}
	out, err := s.keyed(source, ch)
	if err != nil || len(r.Viewer.Fallbacks()) == 0 {
		return out, err
	}
	out[0].fallbacks = &fallbacks{make: func() [][]candidate {
		var groups [][]candidate
		for _, fb := range s.cfg.fallbacksOf(r) {
			// A key too long for the store leaves its fallback out.
			if group, err := s.keyed(source, fb); err == nil {
				groups = append(groups, group)
			}
		}
		return groups
	}}
	return out, nil
}

// keyed is the candidates of ch's specs, and of its forTranslucent, with
// their keys for source.
func (s *Service) keyed(source string, ch choices) ([]candidate, error) {
	add := func(out []candidate, spec variant.Spec, forTranslucent bool) ([]candidate, error) {
		key := variant.Key(s.cfg.Prefix, source, spec)
		if err := variant.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("variant key for %q: %w", source, err)
		}
		return append(out, candidate{spec: spec, key: key, forTranslucent: forTranslucent}), nil
	}
	var out []candidate
	var err error
	for _, spec := range ch.specs {
		if out, err = add(out, spec, false); err != nil {
			return nil, err
		}
	}
	if ch.forTranslucent != nil {
		return add(out, *ch.forTranslucent, true)
	}
	return out, nil
}

// fallbacksAfter is the choices of cands' fallbacks after the candidates
// that hold format f (cands themselves, or a fallback's).
func fallbacksAfter(cands []candidate, f variant.Format) []choices {
	groups := append([][]candidate{cands}, cands[0].fallbackGroups()...)
	i := slices.IndexFunc(groups, func(group []candidate) bool {
		return slices.ContainsFunc(group, func(c candidate) bool { return c.spec.Format == f })
	})
	if i < 0 {
		return nil
	}
	var rest []choices
	for _, group := range groups[i+1:] {
		rest = append(rest, choicesOf(group))
	}
	return rest
}

// choicesOf gives back the choices candidates were made from.
func choicesOf(cands []candidate) choices {
	var ch choices
	for _, c := range cands {
		if c.forTranslucent {
			ch.forTranslucent = &c.spec
		} else {
			ch.specs = append(ch.specs, c.spec)
		}
	}
	for _, group := range cands[0].fallbackGroups() {
		ch.fallbacks = append(ch.fallbacks, choicesOf(group))
	}
	return ch
}
