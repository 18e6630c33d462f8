// Package variant is the single source of truth for what an image variant is
// and how it is named. The server, the edge adapter and the client all use it,
// so a variant requested at the edge and one computed by the service always map
// to the same canonical string and the same stored key.
//
// A Spec is resolved (no "auto" format, no zero quality) before it is encoded.
// Its canonical form is a short, human-readable token list such as
// "w720_q80" or "w320_h320_cover_q75"; the output format travels as the key's
// extension. Keys look like
//
//	ProcessedImages/w720_q80/photos/cat.jpg.webp
//
// and Key and ParseKey round-trip.
package variant

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Fit says how an image is fitted into the requested box.
type Fit uint8

// Fits. The zero value means "not specified": take it from the preset.
const (
	FitUnspecified Fit = iota
	FitInside          // keep the aspect ratio, fit inside the box, never enlarge
	FitCover           // keep the aspect ratio, cover the box, crop the centre
	FitFill            // stretch to exactly the box
)

var fitNames = [...]string{"", "inside", "cover", "fill"}

// String returns the fit's name ("inside", "cover", "fill"), or "" when unspecified.
func (f Fit) String() string {
	if int(f) < len(fitNames) {
		return fitNames[f]
	}
	return "fit(" + strconv.Itoa(int(f)) + ")"
}

// MarshalText writes the fit's name, as configuration files do.
func (f Fit) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses a fit's name.
func (f *Fit) UnmarshalText(b []byte) (err error) {
	*f, err = ParseFit(string(b))
	return err
}

// ParseFit parses a fit name as written in configuration files.
func ParseFit(s string) (Fit, error) {
	for i, name := range fitNames {
		if i > 0 && strings.EqualFold(s, name) {
			return Fit(i), nil
		}
	}
	if s == "" {
		return FitUnspecified, nil
	}
	return FitUnspecified, fmt.Errorf("unknown fit %q (want inside, cover or fill)", s)
}

// Format is an output encoding.
type Format uint8

// Formats. The zero value means "not specified": take it from the preset.
const (
	FormatUnspecified Format = iota
	FormatAuto               // negotiate from the Accept header
	FormatJPEG
	FormatWebP
	FormatAVIF
	FormatPNG
	FormatBest // the smallest accepted format that meets the quality target
)

var formatInfo = [...]struct{ name, ext, contentType string }{
	FormatUnspecified: {"", "", ""},
	FormatAuto:        {"auto", "", ""},
	FormatJPEG:        {"jpeg", "jpg", "image/jpeg"},
	FormatWebP:        {"webp", "webp", "image/webp"},
	FormatAVIF:        {"avif", "avif", "image/avif"},
	FormatPNG:         {"png", "png", "image/png"},
	FormatBest:        {"best", "", ""},
}

// String returns the format's name ("jpeg", "webp", "avif", "png", "auto").
func (f Format) String() string {
	if int(f) < len(formatInfo) {
		return formatInfo[f].name
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// Extension returns the file extension used in variant keys, without the dot.
func (f Format) Extension() string {
	if int(f) < len(formatInfo) {
		return formatInfo[f].ext
	}
	return ""
}

// ContentType returns the MIME type of a concrete format, or "".
func (f Format) ContentType() string {
	if int(f) < len(formatInfo) {
		return formatInfo[f].contentType
	}
	return ""
}

// Concrete reports whether f names an actual encoding (not auto or unspecified).
func (f Format) Concrete() bool { return f >= FormatJPEG && f <= FormatPNG }

// Lossy reports whether the format takes a quality setting.
func (f Format) Lossy() bool { return f == FormatJPEG || f == FormatWebP || f == FormatAVIF }

// KeepsAlpha reports whether the format stores transparency.
func (f Format) KeepsAlpha() bool { return f == FormatWebP || f == FormatAVIF || f == FormatPNG }

// MarshalText writes the format's name, as configuration files do.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses a format's name ("jpg" included).
func (f *Format) UnmarshalText(b []byte) (err error) {
	*f, err = ParseFormat(string(b))
	return err
}

// ParseFormat parses a format name ("jpeg" or "jpg", "webp", "avif", "png", "auto").
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "":
		return FormatUnspecified, nil
	case "jpg":
		return FormatJPEG, nil
	}
	for i, info := range formatInfo {
		if i > 0 && strings.EqualFold(s, info.name) {
			return Format(i), nil
		}
	}
	return FormatUnspecified, fmt.Errorf("unknown format %q (want auto, jpeg, webp, avif or png)", s)
}

// formatByExtension maps a key extension back to its format.
func formatByExtension(ext string) (Format, bool) {
	for i, info := range formatInfo {
		if info.ext != "" && info.ext == ext {
			return Format(i), true
		}
	}
	return FormatUnspecified, false
}

// Spec describes a variant. Zero fields mean "not specified" until the spec is
// resolved; a resolved spec has a concrete format and, for lossy formats, a
// quality. The tags are the server's configuration file's preset fields.
type Spec struct {
	Width       int    `yaml:"width,omitempty"`       // output width in pixels; 0: derived
	Height      int    `yaml:"height,omitempty"`      // output height in pixels; 0: derived
	Fit         Fit    `yaml:"fit,omitempty"`         // how to fit Width×Height
	Format      Format `yaml:"format,omitempty"`      // output encoding
	Quality     int    `yaml:"quality,omitempty"`     // encoder quality 1–100; 0: the format's default
	Progressive bool   `yaml:"progressive,omitempty"` // progressive JPEG
	// AutoQuality searches, per image, the lowest quality whose perceptual
	// score meets the configured target; Quality then reports the choice.
	// For PNG it searches a palette (libimagequant's quality), and keeps
	// the image lossless where no palette meets the target.
	AutoQuality bool `yaml:"auto_quality,omitempty"`
	// TargetScore is the SSIMULACRA2 score auto-quality must reach, 1–100
	// (70 high, 80 very high, 90 visually lossless), in place of the
	// server's target for the format; it turns AutoQuality on. 0: the
	// server's target. Variants at different targets have different keys.
	TargetScore int `yaml:"target_score,omitempty"`
	// FullChroma keeps a JPEG's chroma at full resolution (4:4:4) at any
	// quality; otherwise chroma is subsampled below the quality from which
	// the encoder keeps it whole by itself. Only an auto-quality search
	// sets it, for an image whose subsampled encodes cannot reach the
	// target below that quality (fine colour detail); it is neither on the
	// wire nor in keys.
	FullChroma bool `yaml:"-"`
}

// Override returns s with every specified field of o replacing s's.
func (s Spec) Override(o Spec) Spec {
	if o.Width != 0 {
		s.Width = o.Width
	}
	if o.Height != 0 {
		s.Height = o.Height
	}
	if o.Fit != FitUnspecified {
		s.Fit = o.Fit
	}
	if o.Format != FormatUnspecified && o.Format != s.Format {
		// A quality belongs to its format: another format chosen without a
		// quality takes that format's default, not the preset's number.
		s.Format, s.Quality = o.Format, 0
	}
	if o.Quality != 0 {
		s.Quality = o.Quality
	}
	if o.Progressive {
		s.Progressive = true
	}
	if o.AutoQuality {
		s.AutoQuality = true
	}
	if o.TargetScore != 0 {
		s.TargetScore = o.TargetScore
	}
	return s
}

// Limits bound what a spec may ask for.
type Limits struct {
	MaxWidth  int // largest output width
	MaxHeight int // largest output height
}

// ErrInvalid is wrapped by every error about a spec that cannot be served.
var ErrInvalid = errors.New("invalid variant")

// Validate checks a spec against limits. It reports every problem at once.
func (s Spec) Validate(l Limits) error {
	var errs []error
	if s.Width < 0 || (l.MaxWidth > 0 && s.Width > l.MaxWidth) {
		errs = append(errs, fmt.Errorf("width %d is out of range (1–%d)", s.Width, l.MaxWidth))
	}
	if s.Height < 0 || (l.MaxHeight > 0 && s.Height > l.MaxHeight) {
		errs = append(errs, fmt.Errorf("height %d is out of range (1–%d)", s.Height, l.MaxHeight))
	}
	if s.Quality < 0 || s.Quality > 100 {
		errs = append(errs, fmt.Errorf("quality %d is out of range (1–100)", s.Quality))
	}
	if s.TargetScore < 0 || s.TargetScore > 100 {
		errs = append(errs, fmt.Errorf("target score %d is out of range (1–100)", s.TargetScore))
	}
	if s.Fit > FitFill {
		errs = append(errs, fmt.Errorf("unknown fit %d", s.Fit))
	}
	if s.Format > FormatBest {
		errs = append(errs, fmt.Errorf("unknown format %d", s.Format))
	}
	if s.Fit == FitCover && (s.Width == 0 || s.Height == 0) {
		errs = append(errs, errors.New("fit cover needs both width and height"))
	}
	if s.Fit == FitFill && (s.Width == 0 || s.Height == 0) {
		errs = append(errs, errors.New("fit fill needs both width and height"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// Defaults are what a spec falls back to when resolved.
type Defaults struct {
	// Quality per lossy format.
	Quality map[Format]int
	// Negotiation decides FormatAuto and FormatUnspecified.
	Negotiation Negotiation
}

// Resolve returns the concrete specs that can answer s for a viewer of
// class c: one, or for FormatBest one per format it compares, in order of
// preference. Each has its format negotiated, its quality defaulted, and
// fields that do not apply normalised away, so that equal outputs get equal
// canonical strings. A request is resolved once, here.
func (s Spec) Resolve(c Class, d Defaults) []Spec {
	if s.TargetScore > 0 {
		s.AutoQuality = true // a target is only met by searching
	}
	if s.Format == FormatBest {
		s.AutoQuality = true // "best" compares formats at the quality target
		formats := d.Negotiation.Candidates(c)
		out := make([]Spec, len(formats))
		for i, f := range formats {
			out[i] = s.withFormat(f, d)
		}
		return out
	}
	f := s.Format
	if !f.Concrete() {
		f = d.Negotiation.Choose(c)
	}
	return []Spec{s.withFormat(f, d)}
}

// ForTranslucent is what answers s for a viewer of class c, in place of
// what Resolve gives, when the image turns out translucent: the same
// variant as PNG, when s leaves the format to the service ("auto", none,
// or "best") and none of the formats it resolves to keeps alpha (JPEG,
// for a viewer of neither WebP nor AVIF, or one that sent no Accept
// header). Flattened onto white, a translucent logo is a white box on any
// other background; image servers keep such an image in a format with
// alpha unless a format is asked for by name, as it is here (a JPEG asked
// for is a flattened JPEG). With auto quality ("best" always has it), the
// PNG is searched too: a palette where one meets the target, or else
// lossless; at a fixed quality it is lossless, with the key an explicit
// PNG has. ok is false when there is no such variant.
func (s Spec) ForTranslucent(c Class, d Defaults) (spec Spec, ok bool) {
	if s.Format.Concrete() {
		return Spec{}, false
	}
	for _, r := range s.Resolve(c, d) {
		if r.Format.KeepsAlpha() {
			return Spec{}, false
		}
	}
	s.AutoQuality = s.AutoQuality || s.TargetScore > 0 || s.Format == FormatBest
	return s.withFormat(FormatPNG, d), true
}

// withFormat resolves s for the concrete format f.
func (s Spec) withFormat(f Format, d Defaults) Spec {
	s.Format = f
	if !s.AutoQuality {
		s.TargetScore = 0
	}
	if s.AutoQuality {
		s.Quality = 0
	} else if f.Lossy() {
		if s.Quality == 0 {
			s.Quality = d.Quality[f]
		}
		if s.Quality == 0 {
			s.Quality = 80
		}
	} else {
		s.Quality = 0
	}
	if f != FormatJPEG {
		s.Progressive = false
	}
	if s.Width == 0 || s.Height == 0 || s.Fit == FitUnspecified {
		s.Fit = FitInside
	}
	return s
}

// Canonical returns the canonical token string of a resolved spec, for
// example "w720_q80", "w320_h320_cover_q75_prog" or "w720_qauto80" (auto
// quality at target score 80; "qauto" at the server's target). The format is
// not part of it: it travels as the key's extension.
func (s Spec) Canonical() string {
	var b strings.Builder
	add := func(tok string) {
		if b.Len() > 0 {
			b.WriteByte('_')
		}
		b.WriteString(tok)
	}
	if s.Width == 0 && s.Height == 0 {
		add("full")
	}
	if s.Width > 0 {
		add("w" + strconv.Itoa(s.Width))
	}
	if s.Height > 0 {
		add("h" + strconv.Itoa(s.Height))
	}
	if s.Fit == FitCover || s.Fit == FitFill {
		add(s.Fit.String())
	}
	switch {
	case s.AutoQuality && s.TargetScore > 0:
		add(autoToken + strconv.Itoa(s.TargetScore))
	case s.AutoQuality:
		add(autoToken)
	case s.Quality > 0:
		add("q" + strconv.Itoa(s.Quality))
	}
	if s.Progressive {
		add("prog")
	}
	return b.String()
}

// ParseCanonical parses a canonical token string back into a spec (without
// its format). Only the exact canonical form is accepted, so parsing and
// encoding round-trip.
func ParseCanonical(s string) (Spec, error) {
	var spec Spec
	if s == "" {
		return spec, fmt.Errorf("%w: empty canonical form", ErrInvalid)
	}
	for tok := range strings.SplitSeq(s, "_") {
		switch {
		case strings.HasPrefix(tok, autoToken) && tok != autoToken:
			n, err := parsePositive(tok[len(autoToken):])
			if err != nil || n > 100 {
				return Spec{}, fmt.Errorf("%w: token %q: want a target score 1–100 after %q", ErrInvalid, tok, autoToken)
			}
			spec.AutoQuality, spec.TargetScore = true, n
		case tok == "full", tok == "cover", tok == "fill", tok == "prog", tok == autoToken:
			switch tok {
			case autoToken:
				spec.AutoQuality = true
			case "cover":
				spec.Fit = FitCover
			case "fill":
				spec.Fit = FitFill
			case "prog":
				spec.Progressive = true
			}
		case len(tok) > 1 && (tok[0] == 'w' || tok[0] == 'h' || tok[0] == 'q'):
			n, err := parsePositive(tok[1:])
			if err != nil {
				return Spec{}, fmt.Errorf("%w: token %q: %w", ErrInvalid, tok, err)
			}
			switch tok[0] {
			case 'w':
				spec.Width = n
			case 'h':
				spec.Height = n
			case 'q':
				spec.Quality = n
			}
		default:
			return Spec{}, fmt.Errorf("%w: unknown token %q", ErrInvalid, tok)
		}
	}
	if spec.Fit == FitUnspecified {
		spec.Fit = FitInside
	}
	if spec.Fit != FitInside && (spec.Width == 0 || spec.Height == 0) {
		return Spec{}, fmt.Errorf("%w: fit %s in %q needs both width and height", ErrInvalid, spec.Fit, s)
	}
	if spec.Canonical() != s {
		return Spec{}, fmt.Errorf("%w: %q is not in canonical form (want %q)", ErrInvalid, s, spec.Canonical())
	}
	return spec, nil
}

// autoToken marks auto quality in a canonical spec, followed by the target
// score when the request set one.
const autoToken = "qauto"

// parsePositive parses a decimal without sign or leading zeros, at most 6 digits.
func parsePositive(s string) (int, error) {
	if s == "" || len(s) > 6 || s[0] == '0' {
		return 0, errors.New("want a positive number without leading zeros")
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, errors.New("want a positive number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
