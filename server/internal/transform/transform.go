// Package transform is imgedge's domain: it turns a request for a variant of a
// stored original into a stored variant (EnsureVariant), and image bytes into
// image bytes (Transform). It owns the key scheme, the freshness rules, the
// limits, the collapsing of identical concurrent requests and the bound on
// concurrent image work. It imports no cgo, no AWS SDK and no gRPC: the image
// processor and the object store are interfaces defined here, by their consumer.
package transform

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
)

// Store is what the service needs from an object store.
type Store interface {
	Head(ctx context.Context, bucket, key string) (store.ObjectInfo, error)
	Get(ctx context.Context, bucket, key string, limit int64) ([]byte, store.ObjectInfo, error)
	Put(ctx context.Context, bucket, key string, data []byte, opts store.PutOptions) (store.ObjectInfo, error)
	// Walk lists the objects under prefix, skipping those under skipPrefix.
	Walk(ctx context.Context, bucket, prefix, skipPrefix string, fn func(store.ObjectInfo) error) error
}

// ImageInfo is what a processor learns from an image's header, without
// decoding its pixels.
type ImageInfo struct {
	Format      string // "jpeg", "png", "webp", "avif", "heif", "gif"
	Width       int    // as stored, before EXIF orientation
	Height      int
	Bands       int // channels, alpha included
	SampleBytes int // bytes per channel per pixel: 1 for 8-bit, 2 for 16-bit
	Orientation int // EXIF orientation 1–8; 0 or 1 means none
	Alpha       bool
	// DecodeBuffer is memory the decoder holds for the whole image, however
	// much it shrinks on load, while the image is processed: a progressive
	// JPEG's coefficients, a GIF's frame, an embedded ICC profile's copies.
	// 0 when the decoder works a few rows at a time and finds no profile.
	DecodeBuffer int64
	// Frames is how many frames an animation has (GIF, WebP, APNG); 0 or 1
	// for a still image. Width and Height are a frame's.
	Frames int
}

// Animated says whether the image has more than one frame.
func (i ImageInfo) Animated() bool { return i.Frames > 1 }

// AnimatesAs says whether a variant of the image in format f is an
// animation of all its frames: a WebP of an animated GIF or WebP of at
// most MaxAnimationFrames (libvips decodes an APNG's default image alone,
// and saves no other format's animation here). Any other variant of an
// animation is its first frame.
func (i ImageInfo) AnimatesAs(f variant.Format) bool {
	return i.Animated() && i.Frames <= MaxAnimationFrames && f == variant.FormatWebP && (i.Format == "gif" || i.Format == "webp")
}

// MaxAnimationFrames is the most frames an animation may have to be
// animated: libvips takes a strip of 10,000 pages or more for one image.
// An original of more is served as it is, as for a viewer of no animated
// format.
const MaxAnimationFrames = 9999

// Pixels is Width×Height.
func (i ImageInfo) Pixels() int64 { return int64(i.Width) * int64(i.Height) }

// Operation is one transform to run: a resolved spec applied to an image
// whose header has been read.
type Operation struct {
	Spec   variant.Spec // resolved: concrete format and quality
	Source ImageInfo
}

// Output is an encoded image.
type Output struct {
	Data   []byte
	Width  int
	Height int
	// Score is the SSIMULACRA2 score an auto-quality search measured for
	// the quality it chose (the worst of the scored tiles); 0 when nothing
	// was measured: a fixed quality, or an image too small to score.
	Score float64
}

// Processor decodes, transforms and encodes images.
type Processor interface {
	// Probe reads the header only. It fails with an error wrapping
	// ErrUnsupportedImage when the bytes are not a supported image.
	Probe(data []byte) (ImageInfo, error)
	// Process runs op on data. It fails with an error wrapping
	// ErrUnsupportedImage when the image cannot be decoded.
	Process(data []byte, op Operation) (Output, error)
	// Prepare decodes, orients and resizes data once for the auto-quality
	// search (op.Spec's format and quality are ignored).
	Prepare(data []byte, op Operation) (Prepared, error)
	// Footprint estimates the bytes of memory running op holds at most,
	// from the header alone: admission reserves it before decoding.
	Footprint(op Operation) int64
	// Fits says, from the header alone, whether op's format can store its
	// output: an error wrapping ErrTooLargeForFormat when it cannot.
	Fits(op Operation) error
}

// Outcome says what EnsureVariant did.
type Outcome int

// Outcomes.
const (
	Created Outcome = iota + 1
	AlreadyExisted
	OriginalIsSmaller
	// Pending: the build outlasted the caller's MaxWait; it goes on and
	// stores the variant, and the original is served meanwhile.
	Pending
	// OriginalKept: the original is served as it is, because no variant
	// can stand for it: it is animated, and a variant is a still image.
	OriginalKept
)

func (o Outcome) String() string {
	switch o {
	case Created:
		return "created"
	case AlreadyExisted:
		return "already_existed"
	case OriginalIsSmaller:
		return "original_is_smaller"
	case Pending:
		return "pending"
	case OriginalKept:
		return "original_kept"
	}
	return "unknown"
}

// Observer receives measurements. Implementations must be safe for
// concurrent use; a nil Observer in Config is replaced by a no-op.
type Observer interface {
	// Stage reports how long one step took: "head", "fetch", "process", "store".
	Stage(name string, d time.Duration)
	// Ensured reports a finished EnsureVariant: its outcome, the original's
	// size and the size of what is served.
	Ensured(outcome Outcome, originalBytes, servedBytes int64)
	// Lookup reports a finished lookup: remembered when a known answer
	// spared the variants' HEADs (see Config.KnownVariantTTL).
	Lookup(remembered bool)
	// Searched reports a finished auto-quality search of one format: the
	// trials it made, the quality it chose and that quality's score.
	Searched(f variant.Format, trials, quality int, score float64)
	// FellBack reports a negotiated format that gave way to the next the
	// viewer accepts (from, to): it could not be made, or (EnsureVariant)
	// its variant did not beat the original.
	FellBack(from, to variant.Format)
}

type nopObserver struct{}

func (nopObserver) Stage(string, time.Duration)   {}
func (nopObserver) Ensured(Outcome, int64, int64) {}
func (nopObserver) Lookup(bool)                   {}

func (nopObserver) Searched(variant.Format, int, int, float64) {}
func (nopObserver) FellBack(variant.Format, variant.Format)    {}

// Limits bound the work one request may cause.
type Limits struct {
	MaxSourceBytes  int64 // largest original, in bytes
	MaxStreamBytes  int64 // largest Transform input, in bytes (0: MaxSourceBytes)
	MaxSourcePixels int64 // largest original, in pixels, checked from the header
	MaxWidth        int   // largest output width
	MaxHeight       int   // largest output height
}

// Config is the service's configuration.
type Config struct {
	// Prefix under which variants are stored, for example "ProcessedImages/".
	Prefix string
	// Presets by name. DefaultPreset must name one of them.
	Presets       map[string]variant.Spec
	DefaultPreset string
	// Defaults resolve unspecified qualities and auto formats.
	Defaults variant.Defaults
	// MinSaving is the fraction of the original's size a variant must save
	// to be served, for example 0.05 for 5 %.
	MinSaving float64
	// AllowedBuckets, when not empty, are the only buckets served.
	AllowedBuckets []string
	Limits         Limits
	// ProcessTimeout bounds one build (fetch, process, store), which runs
	// on for the other waiters even if the caller that started it goes away.
	ProcessTimeout time.Duration
	Observer       Observer
	// Auto tunes quality: auto; zero fields take DefaultAutoQuality's.
	Auto AutoQuality
	// VariantCacheControl is stored on variants, so CDNs cache them long
	// while originals served as fallbacks keep the CDN's short default TTL.
	VariantCacheControl string
	// KnownVariantTTL is how long a lookup's answer is trusted without a
	// HEAD of the variant: within it, a hit HEADs only the original (a
	// changed original is still seen at once; a variant deleted from the
	// store is not, until the TTL runs out). 0 HEADs every time.
	KnownVariantTTL time.Duration
}

// Request asks for a variant and says how to ask.
type Request struct {
	// Variant is the preset, its overrides and the viewer's class.
	Variant variant.Request
	// DryRun computes the outcome and sizes without writing anything.
	DryRun bool
	// MaxWait, when positive, bounds how long EnsureVariant waits for a
	// build before it answers Pending (the build goes on).
	MaxWait time.Duration
}

// choices are the resolved specs that can answer a request: one, or one
// per format "best" compares; and forTranslucent, when set, what answers
// instead if the image turns out translucent (variant.Spec.ForTranslucent:
// the PNG of a variant whose formats cannot keep alpha); and forAnimation,
// when set, the specs an animated image gets where specs keep no frames
// (Transform only: a stored variant's key names its format); and
// fallbacks, for a negotiated format, what answers in its place when the
// service cannot make it: the choices of each class of viewer that
// decodes less (variant.Class.Fallbacks), in order, with formats of their
// own.
type choices struct {
	specs          []variant.Spec
	forTranslucent *variant.Spec
	forAnimation   []variant.Spec
	fallbacks      []choices
}

// resolve turns a requested variant into the validated, resolved choices
// that can answer it, once per request. Their fallbacks are left to
// fallbacksOf, for the calls that need them.
func (c *Config) resolve(r variant.Request) (choices, error) {
	spec, err := c.spec(r)
	if err != nil {
		return choices{}, err
	}
	return resolved(spec, r.Viewer, c.Defaults), nil
}

// spec is the validated spec r asks for: its preset with its overrides.
func (c *Config) spec(r variant.Request) (variant.Spec, error) {
	name := r.Preset
	if name == "" {
		name = c.DefaultPreset
	}
	base, ok := c.Presets[name]
	if !ok {
		return variant.Spec{}, fmt.Errorf("%w: unknown preset %q (known: %s)", ErrInvalidArgument, name, c.presetNames())
	}
	spec := base.Override(r.Override)
	if err := spec.Validate(variant.Limits{MaxWidth: c.Limits.MaxWidth, MaxHeight: c.Limits.MaxHeight}); err != nil {
		return variant.Spec{}, err
	}
	return spec, nil
}

// fallbacksOf is what answers r in place of the format negotiated for its
// viewer where that cannot be made (choices.fallbacks): the choices of each
// class of viewer that decodes less, whose format is another. A format
// asked for by name, or compared by "best", has none.
func (c *Config) fallbacksOf(r variant.Request) []choices {
	spec, err := c.spec(r)
	if err != nil || spec.Format.Concrete() || spec.Format == variant.FormatBest {
		return nil
	}
	formats := []variant.Format{resolved(spec, r.Viewer, c.Defaults).specs[0].Format}
	var out []choices
	for _, lower := range r.Viewer.Fallbacks() {
		fb := resolved(spec, lower, c.Defaults)
		if f := fb.specs[0].Format; !slices.Contains(formats, f) {
			formats = append(formats, f)
			out = append(out, fb)
		}
	}
	return out
}

// resolved is the choices that answer spec for a viewer of class c.
func resolved(spec variant.Spec, c variant.Class, d variant.Defaults) choices {
	ch := choices{specs: spec.Resolve(c, d)}
	if png, ok := spec.ForTranslucent(c, d); ok {
		ch.forTranslucent = &png
	}
	return ch
}

func (c *Config) presetNames() string {
	names := make([]string, 0, len(c.Presets))
	for n := range c.Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// checkBucket validates a bucket name against S3's rules and the allow-list.
func (c *Config) checkBucket(bucket string) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if len(c.AllowedBuckets) > 0 && !slices.Contains(c.AllowedBuckets, bucket) {
		return fmt.Errorf("%w: %q", ErrBucketNotAllowed, bucket)
	}
	return nil
}

// checkObject validates a bucket and source key.
func (c *Config) checkObject(bucket, key string) error {
	if err := c.checkBucket(bucket); err != nil {
		return err
	}
	if err := variant.ValidateKey(key); err != nil {
		return err
	}
	if strings.HasPrefix(key, c.Prefix) {
		return fmt.Errorf("%w: %q is under the processed prefix %q; variants are never processed again", ErrKeyNotAllowed, key, c.Prefix)
	}
	return nil
}

// Validate checks the configuration, reporting every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if err := variant.ValidatePrefix(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if _, ok := c.Presets[c.DefaultPreset]; !ok {
		errs = append(errs, fmt.Errorf("default preset %q is not defined", c.DefaultPreset))
	}
	for name, p := range c.Presets {
		if err := p.Validate(variant.Limits{MaxWidth: c.Limits.MaxWidth, MaxHeight: c.Limits.MaxHeight}); err != nil {
			errs = append(errs, fmt.Errorf("preset %q: %w", name, err))
		}
	}
	if c.MinSaving < 0 || c.MinSaving >= 1 {
		errs = append(errs, fmt.Errorf("minimum saving %v must be in [0, 1)", c.MinSaving))
	}
	if c.Limits.MaxSourceBytes <= 0 || c.Limits.MaxSourcePixels <= 0 || c.Limits.MaxWidth <= 0 || c.Limits.MaxHeight <= 0 {
		errs = append(errs, fmt.Errorf("limits must all be positive: %+v", c.Limits))
	}
	if c.ProcessTimeout <= 0 {
		errs = append(errs, fmt.Errorf("process timeout %v must be positive", c.ProcessTimeout))
	}
	if c.KnownVariantTTL < 0 {
		errs = append(errs, fmt.Errorf("known-variant TTL %v must not be negative", c.KnownVariantTTL))
	}
	return errors.Join(errs...)
}
