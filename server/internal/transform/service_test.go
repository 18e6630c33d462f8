package transform

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// memStore is an in-memory Store with S3's conditional-write semantics.
type memStore struct {
	mu      sync.Mutex
	objects map[string]memObject
	version int
	heads   atomic.Int64
	gets    atomic.Int64
	puts    atomic.Int64
}

type memObject struct {
	data []byte
	info store.ObjectInfo
}

func newMemStore() *memStore { return &memStore{objects: map[string]memObject{}} }

func (m *memStore) set(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version++
	m.objects[key] = memObject{data, store.ObjectInfo{Key: key, Size: int64(len(data)), ETag: fmt.Sprintf(`"v%d"`, m.version)}}
}

// remove deletes an object behind the service's back.
func (m *memStore) remove(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
}

func (m *memStore) Head(_ context.Context, _, key string) (store.ObjectInfo, error) {
	m.heads.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return store.ObjectInfo{}, fmt.Errorf("%w: %s", store.ErrNotFound, key)
	}
	return o.info, nil
}

func (m *memStore) Get(ctx context.Context, b, key string, limit int64) ([]byte, store.ObjectInfo, error) {
	m.gets.Add(1)
	info, err := m.Head(ctx, b, key)
	if err != nil {
		return nil, info, err
	}
	if info.Size > limit {
		return nil, info, store.ErrTooLarge
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objects[key].data, info, nil
}

func (m *memStore) Put(_ context.Context, _, key string, data []byte, o store.PutOptions) (store.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, exists := m.objects[key]
	if o.IfNoneMatch && exists || o.IfMatch != "" && (!exists || cur.info.ETag != o.IfMatch) {
		return store.ObjectInfo{}, store.ErrPreconditionFailed
	}
	m.version++
	info := store.ObjectInfo{Key: key, Size: int64(len(data)), ETag: fmt.Sprintf(`"v%d"`, m.version), ContentType: o.ContentType, Metadata: o.Metadata}
	m.objects[key] = memObject{data, info}
	m.puts.Add(1)
	return info, nil
}

func (m *memStore) Walk(ctx context.Context, _, prefix, skip string, fn func(store.ObjectInfo) error) error {
	m.mu.Lock()
	keys := make([]string, 0, len(m.objects))
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) && !strings.HasPrefix(k, skip) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := m.Head(ctx, "", k)
		if err != nil {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// fakeProcessor "encodes" by shrinking the input to a fraction of its size.
type fakeProcessor struct {
	ratio   float64
	delay   time.Duration
	runs    atomic.Int64
	started chan struct{}
	// scoreCap bounds a format's scores where its chroma is subsampled:
	// at every quality when chromaFrom is 0, else below chromaFrom for a
	// spec without FullChroma (full chroma costs 1.5× the bytes).
	scoreCap   map[variant.Format]float64
	chromaFrom int
	// translucent images have pixels below opaque; alpha ones an alpha
	// band (translucent ones too).
	translucent, alpha bool
	// frames is what Probe says the image has; an animation of a GIF
	// (gif) is 400×300 a frame.
	frames int
	gif    bool
	// outputPixels is what a prepared image holds (0: 720×540).
	outputPixels int
	// lastOp is the last operation Process or Prepare was given.
	lastOp atomic.Pointer[Operation]
	// tooLargeFor are the formats that cannot store the output.
	tooLargeFor map[variant.Format]bool
	// perPixel is what work in a format holds for each source pixel
	// (Footprint; 3 bytes where unset).
	perPixel map[variant.Format]int64
	// formatRatio scales ratio for Process in a format (1 where unset).
	formatRatio map[variant.Format]float64
	prepares    atomic.Int64
	// trialDelay is how long each search trial takes.
	trialDelay time.Duration
	trials     trialCount
}

// trialCount counts search trials per format.
type trialCount struct {
	mu sync.Mutex
	n  map[variant.Format]int
}

func (c *trialCount) add(f variant.Format) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[variant.Format]int{}
	}
	c.n[f]++
}

func (c *trialCount) of(f variant.Format) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[f]
}

func (f *fakeProcessor) Probe(data []byte) (ImageInfo, error) {
	if strings.HasPrefix(string(data), "bad") {
		return ImageInfo{}, ErrUnsupportedImage
	}
	if f.gif {
		return ImageInfo{Format: "gif", Width: 400, Height: 300, Bands: 4, Alpha: true, Frames: f.frames}, nil
	}
	if f.alpha || f.translucent {
		return ImageInfo{Format: "png", Width: 4000, Height: 3000, Bands: 4, Alpha: true, Frames: f.frames}, nil
	}
	return ImageInfo{Format: "jpeg", Width: 4000, Height: 3000, Frames: f.frames}, nil
}

func (f *fakeProcessor) Process(data []byte, op Operation) (Output, error) {
	f.runs.Add(1)
	f.lastOp.Store(&op)
	if f.started != nil {
		f.started <- struct{}{}
	}
	time.Sleep(f.delay)
	return Output{Data: make([]byte, int(float64(len(data))*f.ratio*cmp.Or(f.formatRatio[op.Spec.Format], 1))), Width: 720, Height: 540}, nil
}

// Footprint is a fixed amount per pixel, by format (perPixel).
func (f *fakeProcessor) Footprint(op Operation) int64 {
	return op.Source.Pixels() * cmp.Or(f.perPixel[op.Spec.Format], 3)
}

// Fits refuses the formats in tooLargeFor.
func (f *fakeProcessor) Fits(op Operation) error {
	if f.tooLargeFor[op.Spec.Format] {
		return fmt.Errorf("%w: %s stores less", ErrTooLargeForFormat, op.Spec.Format)
	}
	return nil
}

// Prepare returns a fake whose sizes grow with quality (and shrink for
// newer formats) and whose score is q - 20 (the default target 70 needs
// q90), up to the format's scoreCap.
func (f *fakeProcessor) Prepare(data []byte, op Operation) (Prepared, error) {
	f.prepares.Add(1)
	f.lastOp.Store(&op)
	return fakePrepared{n: len(data), ratio: f.ratio, runs: &f.runs, scoreCap: f.scoreCap, chromaFrom: f.chromaFrom, translucent: f.translucent, trialDelay: f.trialDelay, trials: &f.trials, pixels: cmp.Or(f.outputPixels, 720*540)}, nil
}

type fakePrepared struct {
	n           int
	ratio       float64
	runs        *atomic.Int64
	scoreCap    map[variant.Format]float64
	chromaFrom  int
	translucent bool
	trialDelay  time.Duration
	trials      *trialCount
	pixels      int
}

var formatFactor = map[variant.Format]float64{variant.FormatAVIF: 0.5, variant.FormatWebP: 0.7, variant.FormatJPEG: 1}

func (p fakePrepared) Encode(spec variant.Spec) (Output, error) {
	p.runs.Add(1)
	size := float64(p.n) * p.ratio * float64(spec.Quality) / 100 * formatFactor[spec.Format]
	full := p.fullChroma(spec.FullChroma, spec.Quality)
	if full && p.chromaFrom > 0 {
		size *= 1.5
	}
	data := make([]byte, int(size))
	data = append(data, byte(spec.Format), boolByte(full), byte(spec.Quality)) // Score reads them back
	return Output{Data: data, Width: 720, Height: 540}, nil
}

func (p fakePrepared) fullChroma(asked bool, q int) bool {
	return asked || (p.chromaFrom > 0 && q >= p.chromaFrom)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (p fakePrepared) Score(encoded []byte) (float64, error) {
	n := len(encoded)
	score := float64(encoded[n-1]) - 20
	if c, ok := p.scoreCap[variant.Format(encoded[n-3])]; ok && (p.chromaFrom == 0 || encoded[n-2] == 0) {
		score = min(score, c)
	}
	return score, nil
}

func (p fakePrepared) Trial(spec variant.Spec) (Output, float64, error) {
	p.trials.add(spec.Format)
	time.Sleep(p.trialDelay)
	out, _ := p.Encode(spec)
	score, err := p.Score(out.Data)
	return out, score, err
}

func (p fakePrepared) Translucent() bool { return p.translucent }

func (p fakePrepared) Pixels() int { return p.pixels }

func (p fakePrepared) FullChromaFrom(f variant.Format) int {
	if f == variant.FormatJPEG {
		return p.chromaFrom
	}
	return 0
}

func testConfig() Config {
	return Config{
		Prefix:         "ProcessedImages/",
		Presets:        map[string]variant.Spec{"default": {Format: variant.FormatJPEG, Quality: 90}, "small": {Width: 480, Format: variant.FormatAuto}},
		DefaultPreset:  "default",
		Defaults:       variant.Defaults{Quality: map[variant.Format]int{variant.FormatJPEG: 80, variant.FormatWebP: 75}, Negotiation: variant.Negotiation{WebP: true}},
		MinSaving:      0.05,
		Limits:         Limits{MaxSourceBytes: 1 << 20, MaxSourcePixels: 20_000_000, MaxWidth: 4096, MaxHeight: 4096},
		ProcessTimeout: 5 * time.Second,
	}
}

func newTestService(t *testing.T, st Store, p Processor, workers, queue int) *Service {
	t.Helper()
	s, err := New(testConfig(), st, p, workpool.New(workpool.Limits{Workers: workers, Queue: queue}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestColdBuildLooksUpOnce: a cold call HEADs the original, its variant
// and the marker once, then builds. The lookup is repeated before building
// only when a build of the same variant may have finished since: this
// service remembers what its builds stored, so a caller whose lookup ran
// while another build was storing (a herd asking for a new image) does not
// build it again; with nothing remembered (--known-variant-ttl 0), it is
// always repeated.
func TestColdBuildLooksUpOnce(t *testing.T) {
	// Three HEADs a lookup; the fake store's GET counts one more.
	for _, tc := range []struct {
		ttl       time.Duration
		coldHeads int64
	}{
		{time.Minute, 3 + 1},
		{0, 2*3 + 1},
	} {
		t.Run(fmt.Sprint("known-variant-ttl ", tc.ttl), func(t *testing.T) {
			st := newMemStore()
			proc := &fakeProcessor{ratio: 0.5}
			cfg := testConfig()
			cfg.KnownVariantTTL = tc.ttl
			svc, err := New(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}
			st.set("a.jpg", make([]byte, 1000))
			ctx := context.Background()
			res, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{})
			if err != nil || res.Outcome != Created {
				t.Fatalf("cold call: %+v, %v", res, err)
			}
			if n := st.heads.Load(); n != tc.coldHeads {
				t.Errorf("cold call: %d HEADs, want %d", n, tc.coldHeads)
			}
			// A build from a lookup that ran before that build stored its
			// variant: it finds the variant instead of building it again.
			cands, err := svc.candidates("a.jpg", variant.Request{})
			if err != nil {
				t.Fatal(err)
			}
			late := lookupAnswer{res: EnsureResult{OriginalSize: 1000}}
			res, err = svc.build(ctx, "bkt", "a.jpg", cands, late, false)
			if err != nil || res.Outcome != AlreadyExisted {
				t.Errorf("late build: %+v, %v; want the variant the first stored", res, err)
			}
			if n := proc.runs.Load(); n != 1 {
				t.Errorf("%d transforms, want 1", n)
			}
		})
	}
}

func TestEnsureVariantOutcomes(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5}
	svc := newTestService(t, st, proc, 2, 2)
	ctx := context.Background()
	st.set("a.jpg", make([]byte, 1000))

	res, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{})
	if err != nil || res.Outcome != Created || res.Key != "ProcessedImages/full_q90/a.jpg.jpg" || res.Size != 500 || res.OriginalSize != 1000 {
		t.Fatalf("first: %+v, %v", res, err)
	}
	res, err = svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{})
	if err != nil || res.Outcome != AlreadyExisted || res.Width != 720 {
		t.Fatalf("second: %+v, %v", res, err)
	}
	// The hot path is two HEADs and nothing else.
	heads, puts := st.heads.Load(), st.puts.Load()
	if _, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{}); err != nil {
		t.Fatal(err)
	}
	if d := st.heads.Load() - heads; d != 2 || st.puts.Load() != puts || proc.runs.Load() != 1 {
		t.Errorf("hot path: %d HEADs, %d new PUTs, %d transforms", d, st.puts.Load()-puts, proc.runs.Load())
	}

	// The auto format resolves per viewer into different keys.
	webp, _ := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassWebP}})
	jpeg, _ := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassJPEG}})
	if webp.Key != "ProcessedImages/w480_q75/a.jpg.webp" || jpeg.Key != "ProcessedImages/w480_q80/a.jpg.jpg" {
		t.Errorf("negotiated keys: %q, %q", webp.Key, jpeg.Key)
	}
}

func TestEnsureVariantKeepsOriginalWhenNotSmaller(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.97} // saves 3 %, under the 5 % margin
	svc := newTestService(t, st, proc, 1, 1)
	st.set("a.jpg", make([]byte, 1000))
	for range 3 {
		res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
		if err != nil || res.Outcome != OriginalIsSmaller || res.Key != "a.jpg" || res.Size != 1000 {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	if proc.runs.Load() != 1 {
		t.Errorf("%d transforms, want 1", proc.runs.Load())
	}
	if _, err := st.Head(context.Background(), "bkt", "ProcessedImages/full_q90/a.jpg.jpg"); !errors.Is(err, store.ErrNotFound) {
		t.Error("the larger variant was stored")
	}
	// A new original that compresses well gets a variant after all.
	st.set("a.jpg", make([]byte, 2000))
	proc.ratio = 0.5
	res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
	if err != nil || res.Outcome != Created {
		t.Fatalf("after overwrite: %+v, %v", res, err)
	}
}

// TestAnimatedOriginalIsKept: no variant stands for an animated original
// (a variant is its first frame): EnsureVariant answers OriginalKept with
// the original's key, without transforming, and says so again from the
// marker once the service no longer remembers it, until the original is
// replaced by a still image. Transform, asked for an image, makes the
// first frame's.
func TestAnimatedOriginalIsKept(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Minute} {
		st := newMemStore()
		proc := &fakeProcessor{ratio: 0.5, frames: 6}
		cfg := testConfig()
		cfg.KnownVariantTTL = ttl
		svc, err := New(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
		if err != nil {
			t.Fatal(err)
		}
		st.set("a.gif", make([]byte, 1000))
		for range 3 {
			res, err := svc.EnsureVariant(context.Background(), "bkt", "a.gif", Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassJPEG}})
			if err != nil || res.Outcome != OriginalKept || res.Key != "a.gif" || res.Size != 1000 {
				t.Fatalf("ttl %v: %+v, %v; want the original kept", ttl, res, err)
			}
		}
		if proc.runs.Load() != 0 {
			t.Errorf("ttl %v: %d transforms, want none", ttl, proc.runs.Load())
		}
		marker, err := st.Head(context.Background(), "bkt", "ProcessedImages/w480_q80/a.gif.jpg"+markerSuffix)
		if err != nil || marker.Metadata[MetaKept] != "animated" {
			t.Errorf("ttl %v: marker %+v, %v; want kept: animated", ttl, marker, err)
		}
		if _, _, err := svc.Transform(context.Background(), make([]byte, 1000), Request{}); err != nil || proc.runs.Load() != 1 {
			t.Errorf("ttl %v: Transform = %v after %d runs; want the first frame's image", ttl, err, proc.runs.Load())
		}
		proc.frames = 1
		st.set("a.gif", make([]byte, 2000))
		res, err := svc.EnsureVariant(context.Background(), "bkt", "a.gif", Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassJPEG}})
		if err != nil || res.Outcome != Created {
			t.Errorf("ttl %v: after a still replaced it: %+v, %v", ttl, res, err)
		}
	}
}

// TestAnimationsBecomeAnimatedWebP: an animated GIF (or WebP) asked for
// in WebP, or negotiated for a viewer of WebP or AVIF (a GIF key is
// negotiated as for WebP: AVIF keeps no frames), is encoded whole as an
// animated WebP, at the quality searched on its first frame where auto
// quality was asked; one of more frames than a still image's pixel limit,
// one too large for a WebP, or one libvips cannot animate (APNG), is the
// original.
func TestAnimationsBecomeAnimatedWebP(t *testing.T) {
	avif := testConfig()
	avif.Defaults.Negotiation.AVIF = true
	autoWebP := variant.Spec{Width: 480, Format: variant.FormatWebP, AutoQuality: true}
	for _, tc := range []struct {
		name    string
		source  string
		proc    *fakeProcessor
		viewer  variant.Class
		spec    variant.Spec
		wantKey string // "" when the original is kept
		quality int
	}{
		{"GIF, WebP viewer", "a.gif", &fakeProcessor{ratio: 0.5, frames: 6, gif: true}, variant.ClassWebP, variant.Spec{}, "ProcessedImages/w480_q75/a.gif.webp", 75},
		{"GIF, AVIF viewer", "a.gif", &fakeProcessor{ratio: 0.5, frames: 6, gif: true}, variant.ClassAVIF, variant.Spec{}, "ProcessedImages/w480_q75/a.gif.webp", 75},
		// The fake scores q-20: the target 70 is met at q90.
		{"GIF, auto quality", "a.gif", &fakeProcessor{ratio: 0.5, frames: 6, gif: true}, variant.ClassJPEG, autoWebP, "ProcessedImages/w480_qauto/a.gif.webp", 90},
		{"GIF, JPEG viewer", "a.gif", &fakeProcessor{ratio: 0.5, frames: 6, gif: true}, variant.ClassJPEG, variant.Spec{}, "", 0},
		{"GIF of more pixels than a still may have", "a.gif", &fakeProcessor{ratio: 0.5, frames: 200, gif: true}, variant.ClassWebP, variant.Spec{}, "", 0},
		{"APNG, WebP viewer", "a.png", &fakeProcessor{ratio: 0.5, frames: 7, alpha: true}, variant.ClassWebP, variant.Spec{}, "", 0},
		{"GIF too large for a WebP, best", "a.gif", &fakeProcessor{ratio: 0.5, frames: 6, gif: true, tooLargeFor: map[variant.Format]bool{variant.FormatWebP: true}}, variant.ClassAVIF, variant.Spec{Format: variant.FormatBest}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			svc, err := New(avif, st, tc.proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}
			st.set(tc.source, make([]byte, 1000))
			req := Request{Variant: variant.Request{Preset: "small", Viewer: tc.viewer, Override: tc.spec}}
			res, err := svc.EnsureVariant(context.Background(), "bkt", tc.source, req)
			if tc.wantKey == "" {
				if err != nil || res.Outcome != OriginalKept || tc.proc.runs.Load() != 0 {
					t.Fatalf("%+v, %v after %d encodes; want the original kept", res, err, tc.proc.runs.Load())
				}
				// Transform, with no original to serve, makes the first frame.
				if _, _, err := svc.Transform(context.Background(), make([]byte, 1000), req); err != nil || tc.proc.lastOp.Load().Source.Animated() {
					t.Errorf("Transform: %v, encoding %+v; want the first frame", err, tc.proc.lastOp.Load())
				}
				return
			}
			if err != nil || res.Outcome != Created || res.Key != tc.wantKey || res.ContentType != "image/webp" || res.Spec.Quality != tc.quality {
				t.Fatalf("%+v, %v; want a q%d WebP created at %s", res, err, tc.quality, tc.wantKey)
			}
			searches := int64(0)
			if tc.spec.AutoQuality {
				searches = 1 // on the first frame
			}
			if got := tc.proc.lastOp.Load().Spec; got.Format != variant.FormatWebP || got.Quality != tc.quality || tc.proc.prepares.Load() != searches {
				t.Errorf("encoded %+v after %d searches; want one WebP at q%d after %d", got, tc.proc.prepares.Load(), tc.quality, searches)
			}
			runs := tc.proc.runs.Load()
			again, err := svc.EnsureVariant(context.Background(), "bkt", tc.source, req)
			if err != nil || again.Outcome != AlreadyExisted || again.Key != tc.wantKey || again.Spec.Quality != tc.quality || tc.proc.runs.Load() != runs {
				t.Errorf("again: %+v, %v after %d more encodes", again, err, tc.proc.runs.Load()-runs)
			}
		})
	}
}

// TestTransformAnimatesForAnAVIFViewer: Transform of an animated GIF for a
// viewer of AVIF, the format left to the service, makes the animated WebP
// a WebP viewer gets; AVIF asked for by name makes the first frame's.
func TestTransformAnimatesForAnAVIFViewer(t *testing.T) {
	avif := testConfig()
	avif.Defaults.Negotiation.AVIF = true
	for _, tc := range []struct {
		name     string
		format   variant.Format
		want     variant.Format
		animated bool
	}{
		{"format left to the service", variant.FormatAuto, variant.FormatWebP, true},
		{"AVIF by name", variant.FormatAVIF, variant.FormatAVIF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := &fakeProcessor{ratio: 0.5, frames: 6, gif: true}
			svc, err := New(avif, newMemStore(), proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1}))
			if err != nil {
				t.Fatal(err)
			}
			req := Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassAVIF, Override: variant.Spec{Format: tc.format}}}
			_, spec, err := svc.Transform(context.Background(), make([]byte, 1000), req)
			op := proc.lastOp.Load()
			if err != nil || spec.Format != tc.want || op.Spec.Format != tc.want || op.Source.Animated() != tc.animated {
				t.Fatalf("%+v, %v, encoding %+v; want %v, animated %v", spec, err, op, tc.want, tc.animated)
			}
		})
	}
}

// TestKeptMarkersOfOlderRulesAreDecidedAgain: the first release kept every
// animated original, leaving "kept: animated" markers at WebP keys too. A
// marker with a reason but without the rules in force (this generation and
// this pixel limit: one raised since would make what it kept) is decided
// again (here: an animated WebP is made), one with them answers from the
// marker, and a "no variant is smaller" marker, which needs no rules,
// still holds.
func TestKeptMarkersOfOlderRulesAreDecidedAgain(t *testing.T) {
	const vkey = "ProcessedImages/w480_q75/a.gif.webp"
	for _, tc := range []struct {
		name   string
		marker map[string]string // besides the source's ETag
		want   Outcome
	}{
		{"kept by the first rules", map[string]string{MetaKept: "animated"}, Created},
		{"kept by other rules", map[string]string{MetaKept: "animated", MetaKeptRules: "1"}, Created},
		{"kept by this generation without its limit", map[string]string{MetaKept: "animated", MetaKeptRules: keptRulesGeneration}, Created},
		{"kept under a lower pixel limit", map[string]string{MetaKept: "animated", MetaKeptRules: keptRulesGeneration + "/1000000"}, Created},
		{"kept by these rules", map[string]string{MetaKept: "animated", MetaKeptRules: "now"}, OriginalKept},
		{"no variant is smaller", map[string]string{}, OriginalIsSmaller},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			proc := &fakeProcessor{ratio: 0.5, frames: 6, gif: true}
			svc := newTestService(t, st, proc, 1, 1)
			st.set("a.gif", make([]byte, 1000))
			orig, err := st.Head(context.Background(), "bkt", "a.gif")
			if err != nil {
				t.Fatal(err)
			}
			meta := maps.Clone(tc.marker)
			meta[MetaSourceETag] = orig.ETag
			if meta[MetaKeptRules] == "now" {
				meta[MetaKeptRules] = svc.keptRules()
			}
			if _, err := st.Put(context.Background(), "bkt", vkey+markerSuffix, nil, store.PutOptions{Metadata: meta}); err != nil {
				t.Fatal(err)
			}
			req := Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassWebP}}
			res, err := svc.EnsureVariant(context.Background(), "bkt", "a.gif", req)
			if err != nil || res.Outcome != tc.want {
				t.Fatalf("%+v, %v; want %v", res, err, tc.want)
			}
			if made := proc.runs.Load() > 0; made != (tc.want == Created) || made && res.Key != vkey {
				t.Errorf("%d encodes, answered %s; want an animated WebP only where the marker is stale", proc.runs.Load(), res.Key)
			}
		})
	}
}

func TestEnsureVariantRebuildsStaleVariant(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5}
	svc := newTestService(t, st, proc, 1, 1)
	st.set("a.jpg", make([]byte, 1000))
	first, _ := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
	st.set("a.jpg", make([]byte, 3000))
	second, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
	if err != nil || second.Outcome != Created || second.Size != 1500 || second.ETag == first.ETag {
		t.Fatalf("rebuild: %+v, %v", second, err)
	}
}

func TestConcurrentCallsCollapseAndSurviveCancellation(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5, delay: 50 * time.Millisecond}
	svc := newTestService(t, st, proc, 1, 0)
	st.set("a.jpg", make([]byte, 1000))

	// The first caller gives up at once; the build goes on for the others.
	impatient, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := svc.EnsureVariant(impatient, "bkt", "a.jpg", Request{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a collapsed caller failed: %v", err)
		}
	}
	if proc.runs.Load() != 1 || st.puts.Load() != 1 {
		t.Errorf("%d transforms and %d writes, want 1 and 1", proc.runs.Load(), st.puts.Load())
	}
}

func TestOverloadFailsFast(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5, delay: 200 * time.Millisecond, started: make(chan struct{}, 1)}
	svc := newTestService(t, st, proc, 1, 0)
	st.set("a.jpg", make([]byte, 1000))
	st.set("b.jpg", make([]byte, 1000))
	go func() {
		_, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{})
		if err != nil {
			t.Errorf("the call holding the worker failed: %v", err)
		}
	}()
	<-proc.started
	start := time.Now()
	_, err := svc.EnsureVariant(context.Background(), "bkt", "b.jpg", Request{})
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("got %v, want ErrOverloaded", err)
	}
	if _, _, err := svc.Transform(context.Background(), make([]byte, 10), Request{}); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Transform got %v, want ErrOverloaded", err)
	}
	if time.Since(start) > 150*time.Millisecond {
		t.Errorf("overload was not refused at once (%v)", time.Since(start))
	}
}

func TestRequestValidation(t *testing.T) {
	st := newMemStore()
	svc := newTestService(t, st, &fakeProcessor{ratio: 0.5}, 1, 1)
	st.set("bad.jpg", []byte("bad bytes"))
	st.set("big.jpg", make([]byte, 2<<20))
	tests := []struct {
		bucket, key string
		req         Request
		want        error
	}{
		{"bkt", "ProcessedImages/x.jpg", Request{}, ErrKeyNotAllowed},
		{"bkt", "a/../b.jpg", Request{}, variant.ErrBadKey},
		{"B!", "a.jpg", Request{}, ErrInvalidArgument},
		{"bkt", "a.jpg", Request{Variant: variant.Request{Preset: "nope"}}, ErrInvalidArgument},
		{"bkt", "a.jpg", Request{Variant: variant.Request{Override: variant.Spec{Width: 5000}}}, variant.ErrInvalid},
		{"bkt", "missing.jpg", Request{}, store.ErrNotFound},
		{"bkt", "bad.jpg", Request{}, ErrUnsupportedImage},
		{"bkt", "big.jpg", Request{}, ErrTooLarge},
	}
	for _, tt := range tests {
		if _, err := svc.EnsureVariant(context.Background(), tt.bucket, tt.key, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s/%s %+v: got %v, want %v", tt.bucket, tt.key, tt.req, err, tt.want)
		}
	}
	if st.puts.Load() != 0 {
		t.Errorf("%d writes for invalid requests", st.puts.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := testConfig()
	cfg.Prefix = "no-slash"
	cfg.DefaultPreset = "gone"
	cfg.MinSaving = 1
	err := cfg.Validate()
	for _, want := range []string{"no-slash", "gone", "minimum saving"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestBackfill(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5}
	svc := newTestService(t, st, proc, 2, 2)
	for i := range 12 {
		st.set(fmt.Sprintf("photos/%02d.jpg", i), make([]byte, 1000))
	}
	st.set("photos/readme.txt", []byte("not an image"))
	st.set("photos/bad.jpg", []byte("bad image"))
	st.set("other/x.jpg", make([]byte, 1000))
	ctx := context.Background()
	run := func(dry bool) (BackfillSummary, []BackfillItem) {
		var items []BackfillItem
		sum, err := svc.Backfill(ctx, "bkt", "photos/", Request{DryRun: dry}, 4, func(it BackfillItem) error {
			items = append(items, it)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return sum, items
	}
	dry, _ := run(true)
	if dry.Created != 12 || dry.Errors != 1 || dry.Skipped != 1 || st.puts.Load() != 0 {
		t.Fatalf("dry run: %+v, %d writes", dry, st.puts.Load())
	}
	first, items := run(false)
	if first.Objects != 14 || first.Created != 12 || first.Errors != 1 || first.VariantBytes != 12*500 || first.OriginalBytes != 12*1000 || len(items) != 13 {
		t.Fatalf("first run: %+v, %d items", first, len(items))
	}
	second, _ := run(false)
	if second.AlreadyExisted != 12 || second.Created != 0 || second.VariantBytes != first.VariantBytes {
		t.Fatalf("second run: %+v", second)
	}
	if st.puts.Load() != 12 {
		t.Errorf("%d writes, want 12", st.puts.Load())
	}
}

func TestAutoQualityAndBestFormat(t *testing.T) {
	st := newMemStore()
	proc := &fakeProcessor{ratio: 0.5}
	svc := newTestService(t, st, proc, 1, 1)
	st.set("a.png", make([]byte, 10000))
	ctx := context.Background()
	res, err := svc.EnsureVariant(ctx, "bkt", "a.png", Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatJPEG, AutoQuality: true}}})
	if err != nil || res.Key != "ProcessedImages/w720_qauto/a.png.jpg" || res.Spec.Quality != 90 {
		t.Fatalf("auto: %+v, %v", res, err)
	}
	if again, _ := svc.EnsureVariant(ctx, "bkt", "a.png", Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatJPEG, AutoQuality: true}}}); again.Outcome != AlreadyExisted || again.Spec.Quality != 90 {
		t.Errorf("auto, second call: %+v", again)
	}
	// best: the smallest accepted format wins, and the hot path finds it.
	best := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}, Viewer: variant.ClassWebP}}
	res, err = svc.EnsureVariant(ctx, "bkt", "a.png", best)
	if err != nil || res.Spec.Format != variant.FormatWebP || res.Key != "ProcessedImages/w720_qauto/a.png.webp" {
		t.Fatalf("best for a WebP viewer: %+v, %v", res, err)
	}
	res, _ = svc.EnsureVariant(ctx, "bkt", "a.png", best)
	if res.Outcome != AlreadyExisted || res.Spec.Format != variant.FormatWebP {
		t.Errorf("best, second call: %+v", res)
	}
	// A JPEG-only viewer's "best" is chosen between JPEG and, were the
	// image translucent, PNG: the JPEG that auto quality made earlier,
	// the same bytes, was not chosen that way, so it is made again once.
	jpegViewer := Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatBest}}}
	for _, want := range []Outcome{Created, AlreadyExisted} {
		res, _ = svc.EnsureVariant(ctx, "bkt", "a.png", jpegViewer)
		if res.Outcome != want || res.Spec.Format != variant.FormatJPEG || res.Key != "ProcessedImages/w720_qauto/a.png.jpg" {
			t.Errorf("best for a JPEG viewer: %+v, want %v", res, want)
		}
	}
}

// TestTranslucentKeepsAlpha: a translucent image asked for in a format
// left to the service, by a viewer that decodes neither WebP nor AVIF (or
// that says nothing), is stored and served as PNG rather than flattened
// into a JPEG; an opaque one, or one whose format was named, is the JPEG.
// An image without an alpha band is not prepared to find out.
func TestTranslucentKeepsAlpha(t *testing.T) {
	auto := variant.Spec{Width: 720, Format: variant.FormatAuto}
	for _, tc := range []struct {
		name               string
		spec               variant.Spec
		viewer             variant.Class
		translucent, alpha bool
		wantKey            string
		prepares           int64
		quality            int // chosen: a palette's, or 0 (lossless PNG)
		outputPixels       int
	}{
		{"translucent, auto", auto, variant.ClassJPEG, true, true, "ProcessedImages/w720/a.png.png", 1, 0, 0},
		{"translucent, no Accept", auto, variant.ClassUnspecified, true, true, "ProcessedImages/w720/a.png.png", 1, 0, 0},
		// The fake scores q-20: a palette cannot reach 80 (lossless) but
		// reaches 70 (best's target) at q90.
		{"translucent, auto quality", variant.Spec{Width: 720, Format: variant.FormatAuto, TargetScore: 80}, variant.ClassJPEG, true, true, "ProcessedImages/w720_qauto80/a.png.png", 1, 0, 0},
		{"translucent, best", variant.Spec{Width: 720, Format: variant.FormatBest}, variant.ClassJPEG, true, true, "ProcessedImages/w720_qauto/a.png.png", 1, 90, 0},
		{"translucent, best, past half a megapixel: lossless", variant.Spec{Width: 720, Format: variant.FormatBest}, variant.ClassJPEG, true, true, "ProcessedImages/w720_qauto/a.png.png", 1, 0, 800 * 800},
		{"translucent, WebP viewer", auto, variant.ClassWebP, true, true, "ProcessedImages/w720_q75/a.png.webp", 0, 75, 0},
		{"translucent, JPEG by name", variant.Spec{Width: 720, Format: variant.FormatJPEG}, variant.ClassJPEG, true, true, "ProcessedImages/w720_q90/a.png.jpg", 0, 90, 0}, // the preset's quality
		{"opaque with an alpha band", auto, variant.ClassJPEG, false, true, "ProcessedImages/w720_q80/a.png.jpg", 1, 80, 0},
		{"no alpha band", auto, variant.ClassJPEG, false, false, "ProcessedImages/w720_q80/a.png.jpg", 0, 80, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			proc := &fakeProcessor{ratio: 0.5, translucent: tc.translucent, alpha: tc.alpha, outputPixels: tc.outputPixels}
			svc := newTestService(t, st, proc, 1, 1)
			st.set("a.png", make([]byte, 10000))
			req := Request{Variant: variant.Request{Override: tc.spec, Viewer: tc.viewer}}
			for _, want := range []Outcome{Created, AlreadyExisted} {
				res, err := svc.EnsureVariant(context.Background(), "bkt", "a.png", req)
				if err != nil || res.Outcome != want || res.Key != tc.wantKey || res.Spec.Quality != tc.quality {
					t.Fatalf("EnsureVariant = %+v, %v; want %v at %s, quality %d", res, err, want, tc.wantKey, tc.quality)
				}
				if wantType := "image/" + strings.TrimPrefix(path.Ext(tc.wantKey), "."); res.ContentType != strings.Replace(wantType, "jpg", "jpeg", 1) {
					t.Errorf("content type %q for %s", res.ContentType, tc.wantKey)
				}
			}
			if got := proc.prepares.Load(); got != tc.prepares {
				t.Errorf("%d images prepared, want %d", got, tc.prepares)
			}
			// Transform answers the same way, without storage.
			_, chosen, err := svc.Transform(context.Background(), make([]byte, 10000), req)
			if err != nil || chosen.Format.Extension() != strings.TrimPrefix(path.Ext(tc.wantKey), ".") {
				t.Errorf("Transform chose %v, %v; want the format of %s", chosen.Format, err, tc.wantKey)
			}
		})
	}
}

// TestAutoQualitySkipsLowQualityJPEGs: a same-size auto JPEG of a JPEG
// source at or below the skip threshold (25 by default) is answered with
// the original without a search; above it, the search runs. Transform
// searches either way.
func TestAutoQualitySkipsLowQualityJPEGs(t *testing.T) {
	for _, tc := range []struct {
		sourceQuality int
		searched      bool
	}{{20, false}, {25, false}, {40, true}, {70, true}} {
		st := newMemStore()
		proc := &fakeProcessor{ratio: 0.5}
		svc := newTestService(t, st, proc, 1, 1)
		var src bytes.Buffer
		if err := jpeg.Encode(&src, image.NewGray(image.Rect(0, 0, 16, 16)), &jpeg.Options{Quality: tc.sourceQuality}); err != nil {
			t.Fatal(err)
		}
		st.set("a.jpg", src.Bytes())
		res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{Variant: variant.Request{Override: variant.Spec{Format: variant.FormatJPEG, AutoQuality: true}}})
		if err != nil {
			t.Fatalf("q%d source: %v", tc.sourceQuality, err)
		}
		if searched := proc.runs.Load() > 0; searched != tc.searched || searched == (res.Outcome == OriginalIsSmaller) {
			t.Errorf("q%d source: %v after %d encodes, want searched %v", tc.sourceQuality, res.Outcome, proc.runs.Load(), tc.searched)
		}
		// Transform has no original to fall back on: it always searches
		// (the fake's score is q-20, so the target 70 is met at q90).
		_, chosen, err := svc.Transform(context.Background(), src.Bytes(), Request{Variant: variant.Request{Override: variant.Spec{Format: variant.FormatJPEG, AutoQuality: true}}})
		if err != nil || chosen.Quality != 90 {
			t.Errorf("q%d source, Transform: q%d, %v; want the search's q90", tc.sourceQuality, chosen.Quality, err)
		}
	}
}

// slowHeads holds every HEAD until released, counting them.
type slowHeads struct {
	*memStore
	release chan struct{}
}

func (s slowHeads) Head(ctx context.Context, b, key string) (store.ObjectInfo, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return store.ObjectInfo{}, ctx.Err()
	}
	return s.memStore.Head(ctx, b, key)
}

// TestConcurrentHitsShareOneLookup: callers asking for the same stored
// variant at once share one round of HEADs; one caller giving up does not
// fail the others; a later call looks again.
func TestConcurrentHitsShareOneLookup(t *testing.T) {
	mem := newMemStore()
	mem.set("a.jpg", make([]byte, 1000))
	req := Request{Variant: variant.Request{Preset: "default"}}
	builder := newTestService(t, mem, &fakeProcessor{ratio: 0.5}, 1, 1)
	if res, err := builder.EnsureVariant(context.Background(), "bkt", "a.jpg", req); err != nil || res.Outcome != Created {
		t.Fatalf("building the variant: %+v, %v", res, err)
	}
	st := slowHeads{memStore: mem, release: make(chan struct{})}
	svc := newTestService(t, st, &fakeProcessor{ratio: 0.5}, 1, 1)
	mem.heads.Store(0)
	const callers = 8
	impatient, giveUp := context.WithCancel(context.Background())
	results := make(chan error, callers)
	for i := range callers {
		ctx := context.Background()
		if i == 0 {
			ctx = impatient
		}
		go func() {
			res, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", req)
			if err == nil && res.Outcome != AlreadyExisted {
				err = fmt.Errorf("outcome %v", res.Outcome)
			}
			results <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // every caller is waiting on the held HEADs
	giveUp()
	if err := <-results; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up got %v", err)
	}
	close(st.release)
	for range callers - 1 {
		if err := <-results; err != nil {
			t.Errorf("a caller sharing the lookup: %v", err)
		}
	}
	// Two HEADs (the original and the variant) for all of them; a caller
	// slow enough to arrive after the shared round would make its own.
	n := mem.heads.Load()
	if n > 4 {
		t.Errorf("%d callers made %d HEADs, want 2 (the original and the variant, once)", callers, n)
	}
	if _, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", req); err != nil || mem.heads.Load() != n+2 {
		t.Errorf("a later call: %v, %d HEADs, want its own 2", err, mem.heads.Load()-n)
	}
}

// TestStandInForANegotiatedFormat: EnsureVariant for an AVIF viewer whose
// AVIF the budget cannot afford stores the WebP a WebP viewer gets, at its
// key, and a marker beside the AVIF's key that sends later lookups there:
// neither viewer builds again (with nothing remembered between calls).
// Replacing the original, or deleting the WebP, makes it anew; a budget
// that affords the AVIF (rules other than the marker's) makes the AVIF.
func TestStandInForANegotiatedFormat(t *testing.T) {
	st := newMemStore()
	st.set("a.jpg", make([]byte, 1000))
	st.set("b.jpg", make([]byte, 1000))
	cfg := withAVIF()
	cfg.KnownVariantTTL = 0
	// fakeProcessor: 4000×3000; the budget holds 2 bytes a pixel, not 3.
	proc := &fakeProcessor{ratio: 0.5, perPixel: map[variant.Format]int64{variant.FormatAVIF: 3, variant.FormatWebP: 2}}
	svc := newServiceWith(t, cfg, st, proc, workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000})
	ctx := context.Background()
	webpKey := func(src string) string { return "ProcessedImages/w480_q75/" + src + ".webp" }
	avifKey := func(src string) string { return "ProcessedImages/w480_q50/" + src + ".avif" }
	want := func(name string, svc *Service, src string, c variant.Class, outcome Outcome, key string, runs int64) {
		t.Helper()
		res, err := svc.EnsureVariant(ctx, "bkt", src, Request{Variant: variant.Request{Preset: "small", Viewer: c}})
		if err != nil || res.Outcome != outcome || res.Key != key || res.VariantKey != key {
			t.Fatalf("%s: %+v, %v; want %v at %q", name, res, err, outcome, key)
		}
		if f := res.Spec.Format; !strings.HasSuffix(key, "."+f.String()) || res.ContentType != f.ContentType() {
			t.Errorf("%s: answered as %v (%s)", name, f, res.ContentType)
		}
		if n := proc.runs.Load(); n != runs {
			t.Errorf("%s: %d transforms in all, want %d", name, n, runs)
		}
	}
	want("AVIF viewer", svc, "a.jpg", variant.ClassAVIF, Created, webpKey("a.jpg"), 1)
	marker, err := st.Head(ctx, "bkt", avifKey("a.jpg")+markerSuffix)
	if err != nil || marker.Metadata[MetaServedBy] != webpKey("a.jpg") {
		t.Fatalf("marker beside the AVIF's key: %+v, %v", marker, err)
	}
	if _, err := st.Head(ctx, "bkt", avifKey("a.jpg")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("something stored at the AVIF's key: %v", err)
	}
	want("AVIF viewer again", svc, "a.jpg", variant.ClassAVIF, AlreadyExisted, webpKey("a.jpg"), 1)
	want("WebP viewer", svc, "a.jpg", variant.ClassWebP, AlreadyExisted, webpKey("a.jpg"), 1)

	st.set("a.jpg", make([]byte, 1200)) // replaced
	want("AVIF viewer, new original", svc, "a.jpg", variant.ClassAVIF, Created, webpKey("a.jpg"), 2)
	want("WebP viewer, new original", svc, "a.jpg", variant.ClassWebP, AlreadyExisted, webpKey("a.jpg"), 2)
	if v, _ := st.Head(ctx, "bkt", webpKey("a.jpg")); v.Size != 600 {
		t.Errorf("the WebP is %d bytes, want the new original's 600", v.Size)
	}
	st.remove(webpKey("a.jpg")) // deleted behind the service's back
	want("AVIF viewer, WebP deleted", svc, "a.jpg", variant.ClassAVIF, Created, webpKey("a.jpg"), 3)

	// The WebP viewer first: the AVIF viewer's build finds its WebP.
	want("WebP viewer first", svc, "b.jpg", variant.ClassWebP, Created, webpKey("b.jpg"), 4)
	want("then an AVIF viewer", svc, "b.jpg", variant.ClassAVIF, AlreadyExisted, webpKey("b.jpg"), 5)
	want("then an AVIF viewer again", svc, "b.jpg", variant.ClassAVIF, AlreadyExisted, webpKey("b.jpg"), 5)

	roomier := newServiceWith(t, cfg, st, proc, workpool.Limits{Workers: 1, Queue: 1})
	want("AVIF viewer, a budget that affords AVIF", roomier, "a.jpg", variant.ClassAVIF, Created, avifKey("a.jpg"), 6)
	want("AVIF viewer, AVIF stored", svc, "a.jpg", variant.ClassAVIF, AlreadyExisted, avifKey("a.jpg"), 6)
}

// TestStandInIsRemembered: the answer a stand-in gives is remembered like
// any other, so a hot AVIF viewer's call HEADs the original alone.
func TestStandInIsRemembered(t *testing.T) {
	st := newMemStore()
	st.set("a.jpg", make([]byte, 1000))
	cfg := withAVIF()
	cfg.KnownVariantTTL = time.Minute
	proc := &fakeProcessor{ratio: 0.5, perPixel: map[variant.Format]int64{variant.FormatAVIF: 3, variant.FormatWebP: 2}}
	svc := newServiceWith(t, cfg, st, proc, workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000})
	req := Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassAVIF}}
	first, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", req)
	if err != nil || first.Outcome != Created {
		t.Fatalf("first: %+v, %v", first, err)
	}
	heads := st.heads.Load()
	res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", req)
	if err != nil || res.Outcome != AlreadyExisted || res.Key != first.Key || res.Spec != first.Spec || res.Size != first.Size {
		t.Fatalf("hot: %+v, %v; want %+v", res, err, first)
	}
	if n := st.heads.Load() - heads; n != 1 {
		t.Errorf("hot call: %d HEADs, want the original's alone", n)
	}
}

// TestStandInMustBeatTheOriginal: a fallback whose variant does not beat
// the original gives way to the next (the JPEG a JPEG-only viewer gets,
// which then finds it);
// where none does, the original is served, decided under the budget's
// rules, so that a budget that affords the AVIF decides again.
func TestStandInMustBeatTheOriginal(t *testing.T) {
	avifOver := map[variant.Format]int64{variant.FormatAVIF: 3, variant.FormatWebP: 2, variant.FormatJPEG: 2}
	const avifKey = "ProcessedImages/w480_q50/a.jpg.avif"
	for _, tc := range []struct {
		name        string
		formatRatio map[variant.Format]float64
		outcome     Outcome
		key         string
		runs        int64
	}{
		{"WebP not smaller: JPEG", map[variant.Format]float64{variant.FormatWebP: 2}, Created, "ProcessedImages/w480_q80/a.jpg.jpg", 2},
		{"neither smaller: the original", map[variant.Format]float64{variant.FormatWebP: 2, variant.FormatJPEG: 2}, OriginalIsSmaller, "a.jpg", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			st.set("a.jpg", make([]byte, 1000))
			cfg := withAVIF()
			proc := &fakeProcessor{ratio: 0.5, perPixel: avifOver, formatRatio: tc.formatRatio}
			svc := newServiceWith(t, cfg, st, proc, workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000})
			req := Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassAVIF}}
			for range 2 {
				res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", req)
				if err != nil || res.Outcome != tc.outcome && res.Outcome != AlreadyExisted || res.Key != tc.key {
					t.Fatalf("%+v, %v; want %v at %q", res, err, tc.outcome, tc.key)
				}
			}
			if n := proc.runs.Load(); n != tc.runs {
				t.Errorf("%d transforms, want %d", n, tc.runs)
			}
			// The JPEG standing in is the one a JPEG-only viewer gets.
			jpegViewer := Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassJPEG}}
			if res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", jpegViewer); tc.outcome == Created && (err != nil || res.Outcome != AlreadyExisted || res.Key != tc.key) {
				t.Errorf("JPEG-only viewer: %+v, %v; want the JPEG at %q", res, err, tc.key)
			}
			marker, err := st.Head(context.Background(), "bkt", avifKey+markerSuffix)
			if err != nil || marker.Metadata[MetaKeptRules] != svc.fallbackRules() {
				t.Fatalf("marker beside the AVIF's key: %+v, %v; want it decided under %q", marker, err, svc.fallbackRules())
			}
			roomier := newServiceWith(t, cfg, st, proc, workpool.Limits{Workers: 1, Queue: 1})
			res, err := roomier.EnsureVariant(context.Background(), "bkt", "a.jpg", req)
			if err != nil || res.Outcome != Created || res.Key != avifKey {
				t.Errorf("a budget that affords the AVIF: %+v, %v", res, err)
			}
		})
	}
}

// TestNegotiatedFormatMustBeatTheOriginal: a negotiated format whose
// variant does not beat the original gives way to the next format the
// viewer accepts (a WebP viewer's to the JPEG); a format asked for by name
// does not.
func TestNegotiatedFormatMustBeatTheOriginal(t *testing.T) {
	st := newMemStore()
	st.set("a.jpg", make([]byte, 1000))
	proc := &fakeProcessor{ratio: 0.5, formatRatio: map[variant.Format]float64{variant.FormatWebP: 2}}
	svc := newTestService(t, st, proc, 1, 1)
	ctx := context.Background()
	res, err := svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{Variant: variant.Request{Preset: "small", Viewer: variant.ClassWebP}})
	if err != nil || res.Outcome != Created || res.Key != "ProcessedImages/w480_q80/a.jpg.jpg" {
		t.Fatalf("WebP viewer: %+v, %v; want the JPEG", res, err)
	}
	res, err = svc.EnsureVariant(ctx, "bkt", "a.jpg", Request{Variant: variant.Request{Override: variant.Spec{Width: 480, Format: variant.FormatWebP}, Viewer: variant.ClassWebP}})
	if err != nil || res.Outcome != OriginalIsSmaller || res.Key != "a.jpg" {
		t.Fatalf("WebP by name: %+v, %v; want the original", res, err)
	}
}

// TestCannotPayKeepsTheOriginal: a same-size auto-quality JPEG of a JPEG
// whose tables say it is already at or below SkipJPEGAtOrBelow keeps the
// original without decoding it, whether the JPEG was asked for or stands in
// for a negotiated format the budget cannot afford.
func TestCannotPayKeepsTheOriginal(t *testing.T) {
	sameSizeAuto := variant.Spec{Format: variant.FormatAuto, AutoQuality: true}
	for _, tc := range []struct {
		name   string
		viewer variant.Class
	}{
		{"JPEG-only viewer", variant.ClassJPEG},
		{"AVIF viewer, AVIF and WebP past the budget", variant.ClassAVIF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			st.set("a.jpg", testimages.JPEG(64, 48, 20))
			proc := &fakeProcessor{ratio: 0.5, perPixel: map[variant.Format]int64{variant.FormatAVIF: 3, variant.FormatWebP: 3, variant.FormatJPEG: 2}}
			svc := newServiceWith(t, withAVIF(), st, proc, workpool.Limits{Workers: 1, Queue: 1, PixelBytes: 30_000_000})
			res, err := svc.EnsureVariant(context.Background(), "bkt", "a.jpg", Request{Variant: variant.Request{Override: sameSizeAuto, Viewer: tc.viewer}})
			if err != nil || res.Outcome != OriginalIsSmaller || res.Key != "a.jpg" {
				t.Fatalf("%+v, %v; want the original", res, err)
			}
			if proc.prepares.Load() != 0 || proc.runs.Load() != 0 {
				t.Errorf("%d prepares and %d runs; want none", proc.prepares.Load(), proc.runs.Load())
			}
		})
	}
}
