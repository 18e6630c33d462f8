package edgeadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/edgeadapter/cloudfront"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// fakeService answers EnsureVariant like the real service would, from the
// request alone, and records what it was asked.
type fakeService struct {
	mu      sync.Mutex
	calls   []*imgedgev1.EnsureVariantRequest
	outcome imgedgev1.Outcome
	err     error
}

func (f *fakeService) EnsureVariant(_ context.Context, req *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, proto.Clone(req).(*imgedgev1.EnsureVariantRequest))
	if f.err != nil {
		return nil, f.err
	}
	if f.outcome == imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER || f.outcome == imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT {
		return &imgedgev1.EnsureVariantResponse{Outcome: f.outcome, Key: req.Key}, nil
	}
	wanted, err := variant.FromProto(req.GetVariant())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	spec := wanted.Override.Resolve(wanted.Viewer, variant.Defaults{Negotiation: variant.Negotiation{AVIF: true, WebP: true}})[0]
	return &imgedgev1.EnsureVariantResponse{Outcome: imgedgev1.Outcome_OUTCOME_CREATED, Key: variant.Key(variant.DefaultPrefix, req.Key, spec)}, nil
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Service.Address = "imgedge.invalid:443"
	cfg.Buckets = map[string]string{"example.org": "example-web"}
	cfg.PathPrefixes = []string{"/photos/", "/images/"}
	return cfg
}

func newTestAdapter(t *testing.T, cfg Config, svc Ensurer) *Adapter {
	t.Helper()
	a, err := New(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.dial = func(Service) (Ensurer, error) { return svc, nil }
	return a
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("cloudfront", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// requestBytes extracts the raw request from an event, as CloudFront sent it.
func requestBytes(t *testing.T, event []byte) []byte {
	t.Helper()
	ev, err := cloudfront.ParseEvent(event)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Records[0].CF.Request.Raw
}

// call is the EnsureVariant request the adapter must send.
func call(bucket, key string, want variant.Request) *imgedgev1.EnsureVariantRequest {
	return &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: key, Variant: want.Proto(), MaxWait: durationpb.New(time.Second)}
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		fixture string
		action  Action
		uri     string                          // forwarded URI on rewrite
		call    *imgedgev1.EnsureVariantRequest // what the service must be asked (nil: no call)
	}{
		{"s3_plain.json", Rewrite, "/ProcessedImages/full_q80/photos/cat.jpg.jpg",
			call("demo", "photos/cat.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassJPEG})},
		{"s3_accept_avif.json", Rewrite, "/ProcessedImages/full_q80/photos/cat.jpg.avif",
			call("demo", "photos/cat.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassAVIF})},
		{"s3_accept_webp.json", Rewrite, "/ProcessedImages/full_q80/photos/cat.jpg.webp",
			call("demo", "photos/cat.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassWebP})},
		{"s3_query_width.json", Rewrite, "/ProcessedImages/w640_q75/photos/cat.jpg.webp",
			call("demo", "photos/cat.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Width: 640, Quality: 75, Format: variant.FormatAuto}, Viewer: variant.ClassWebP})},
		{"s3_query_preset.json", Rewrite, "/ProcessedImages/full_q80/photos/cat.jpg.avif",
			call("demo", "photos/cat.jpg", variant.Request{Preset: "thumbnail", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassAVIF})},
		{"s3_korean_space.json", Rewrite, "/ProcessedImages/full_q80/photos/%EA%B3%A0%EC%96%91%EC%9D%B4%20%EC%82%AC%EC%A7%84.jpg.jpg",
			call("demo", "photos/고양이 사진.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassJPEG})},
		{"s3_plus.json", Rewrite, "/ProcessedImages/full_q80/photos/a+b.jpg.jpg",
			call("demo", "photos/a+b.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassJPEG})},
		{"s3_origin_headers.json", Rewrite, "/ProcessedImages/full_q80/photos/cat.jpg.jpg",
			call("media-originals", "photos/cat.jpg", variant.Request{Preset: "small", Override: variant.Spec{Format: variant.FormatAuto}, Viewer: variant.ClassJPEG})},
		{"custom_origin_image.json", Rewrite, "/ProcessedImages/w320_q80/images/dog.png.jpg",
			call("example-web", "images/dog.png", variant.Request{Preset: "optimized", Override: variant.Spec{Width: 320, Format: variant.FormatAuto}, Viewer: variant.ClassJPEG})},
		{"s3_format_class_header.json", Rewrite, "/ProcessedImages/w768_q80/photos/cat.jpg.avif",
			call("demo", "photos/cat.jpg", variant.Request{Preset: "optimized", Override: variant.Spec{Width: 768, Format: variant.FormatAuto}, Viewer: variant.ClassAVIF})},
		{"custom_origin_root.json", PassThrough, "", nil},
		{"s3_not_image.json", PassThrough, "", nil},
		{"s3_processed.json", PassThrough, "", nil},
		{"s3_dotdot.json", PassThrough, "", nil},
		{"s3_post.json", PassThrough, "", nil},
		{"s3_query_bad_preset.json", PassThrough, "", nil},
		{"s3_query_bad_width.json", PassThrough, "", nil},
		{"s3_query_bad_format.json", PassThrough, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			svc := &fakeService{}
			a := newTestAdapter(t, testConfig(), svc)
			event := fixture(t, tt.fixture)
			in := requestBytes(t, event)
			out, d, err := a.HandleEvent(context.Background(), event)
			if err != nil {
				t.Fatal(err)
			}
			if d.Action != tt.action {
				t.Fatalf("action %s (%s), want %s", d.Action, d.Reason, tt.action)
			}
			if tt.call == nil {
				if len(svc.calls) != 0 {
					t.Errorf("a pass-through called the service: %v", svc.calls)
				}
			} else if len(svc.calls) != 1 || !proto.Equal(svc.calls[0], tt.call) {
				t.Errorf("service asked %v, want %v", svc.calls, tt.call)
			}
			assertOnlyURIChanged(t, in, out, tt.uri)
		})
	}
}

// assertOnlyURIChanged checks the forwarded request byte for byte: the input
// unchanged (wantURI == ""), or the input with only its uri value replaced.
func assertOnlyURIChanged(t *testing.T, in, out []byte, wantURI string) {
	t.Helper()
	if wantURI == "" {
		if !bytes.Equal(in, out) {
			t.Fatalf("the request changed:\n%s\nwant\n%s", out, in)
		}
		return
	}
	var before, after map[string]any
	if err := json.Unmarshal(in, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &after); err != nil {
		t.Fatalf("the forwarded request is not JSON: %v\n%s", err, out)
	}
	if after["uri"] != wantURI {
		t.Fatalf("uri %v, want %s", after["uri"], wantURI)
	}
	oldURI, _ := json.Marshal(before["uri"])
	newURI, _ := json.Marshal(wantURI)
	if want := bytes.Replace(in, append([]byte(`"uri": `), oldURI...), append([]byte(`"uri": `), newURI...), 1); !bytes.Equal(out, want) {
		t.Fatalf("bytes other than the uri changed:\n%s", out)
	}
	before["uri"] = wantURI
	if !reflect.DeepEqual(before, after) {
		t.Fatal("fields other than uri changed")
	}
}

func TestFallbacks(t *testing.T) {
	event := fixture(t, "s3_accept_webp.json")
	in := requestBytes(t, event)
	for name, svc := range map[string]*fakeService{
		"original is smaller": {outcome: imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER},
		"original kept":       {outcome: imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT},
		"not found":           {err: status.Error(codes.NotFound, "no such key")},
		"invalid":             {err: status.Error(codes.InvalidArgument, "truncated")},
		"overloaded":          {err: status.Error(codes.ResourceExhausted, "busy")},
		"unavailable":         {err: status.Error(codes.Unavailable, "down")},
		"deadline":            {err: status.Error(codes.DeadlineExceeded, "slow")},
		"unauthenticated":     {err: status.Error(codes.Unauthenticated, "token")},
		"internal":            {err: status.Error(codes.Internal, "boom")},
	} {
		t.Run(name, func(t *testing.T) {
			a := newTestAdapter(t, testConfig(), svc)
			out, d, err := a.HandleEvent(context.Background(), event)
			if err != nil || d.Action != Fallback || !bytes.Equal(out, in) {
				t.Fatalf("got %s (%s) %v:\n%s", d.Action, d.Reason, err, out)
			}
		})
	}
}

// badKeyService names a key outside the processed prefix: a confused or
// hostile service must not be able to point viewers anywhere.
type badKeyService struct{ key string }

func (b badKeyService) EnsureVariant(context.Context, *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error) {
	return &imgedgev1.EnsureVariantResponse{Outcome: imgedgev1.Outcome_OUTCOME_CREATED, Key: b.key}, nil
}

func TestUnexpectedKeysFallBack(t *testing.T) {
	event := fixture(t, "s3_plain.json")
	for _, key := range []string{"", "photos/cat.jpg", "private/secret.jpg", "ProcessedImages/../x.jpg"} {
		a := newTestAdapter(t, testConfig(), badKeyService{key})
		out, d, _ := a.HandleEvent(context.Background(), event)
		if d.Action != Fallback || !bytes.Equal(out, requestBytes(t, event)) {
			t.Errorf("key %q: %s", key, d.Action)
		}
	}
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	cfg := testConfig()
	cfg.Breaker = BreakerConfig{Failures: 3, OpenMS: 100}
	svc := &fakeService{err: status.Error(codes.Unavailable, "down")}
	a := newTestAdapter(t, cfg, svc)
	event := fixture(t, "s3_plain.json")
	for range 10 {
		if _, d, _ := a.HandleEvent(context.Background(), event); d.Action != Fallback {
			t.Fatal(d)
		}
	}
	if n := len(svc.calls); n != 3 {
		t.Fatalf("%d calls while the service was down, want the breaker to stop at 3", n)
	}
	// Request errors (a missing original) do not open the breaker.
	notFound := &fakeService{err: status.Error(codes.NotFound, "missing")}
	b := newTestAdapter(t, cfg, notFound)
	for range 10 {
		b.HandleEvent(context.Background(), event)
	}
	if len(notFound.calls) != 10 {
		t.Errorf("NotFound opened the breaker: %d calls", len(notFound.calls))
	}
	// After the open period one trial call goes through; success closes it.
	svc.mu.Lock()
	svc.err = nil
	svc.mu.Unlock()
	waitFor(t, func() bool {
		_, d, _ := a.HandleEvent(context.Background(), event)
		return d.Action == Rewrite
	})
}

func TestKeyURIRoundTrip(t *testing.T) {
	for _, key := range []string{"a.jpg", "photos/고양이 사진.jpg", "a+b/c%d.jpg", "x/y z/ü.png", "q?#.jpg"} {
		uri := URIFromKey(key)
		if strings.ContainsAny(uri, " ?#") {
			t.Errorf("URIFromKey(%q) = %q is not escaped", key, uri)
		}
		back, err := KeyFromURI(uri)
		if err != nil || back != key {
			t.Errorf("KeyFromURI(URIFromKey(%q)) = %q, %v", key, back, err)
		}
	}
}

func TestQueryBounds(t *testing.T) {
	cfg := testConfig()
	for q, want := range map[string][2]int{
		"w=1":        {160, 0},
		"w=500":      {640, 0},
		"w=99999":    {2560, 0},
		"w=300&q=1":  {320, 40},
		"w=300&q=77": {320, 75},
		"q=100":      {0, 90},
		"q=auto":     {0, 0},
	} {
		req, err := cfg.variantFromQuery(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if q == "q=auto" && !req.Override.AutoQuality {
			t.Errorf("q=auto did not ask for auto quality")
		}
		if req.Override.Width != want[0] || req.Override.Quality != want[1] {
			t.Errorf("%s: width %d quality %d, want %v", q, req.Override.Width, req.Override.Quality, want)
		}
	}
}

func FuzzURIAndQuery(f *testing.F) {
	f.Add("/photos/%EA%B3%A0.jpg", "w=500&q=70")
	f.Add("/a+b%20c.png", "preset=thumbnail&format=webp")
	f.Add("/%zz.jpg", "w=%zz")
	cfg := testConfig()
	f.Fuzz(func(t *testing.T, uri, query string) {
		if key, err := KeyFromURI(uri); err == nil {
			if variant.ValidateKey(key) != nil {
				t.Fatalf("KeyFromURI(%q) = %q, an invalid key", uri, key)
			}
			if back, err := KeyFromURI(URIFromKey(key)); err != nil || back != key {
				t.Fatalf("round trip of %q: %q, %v", key, back, err)
			}
		}
		req, err := cfg.variantFromQuery(query)
		if err != nil {
			return
		}
		if w := req.Override.Width; w != 0 && !contains(cfg.Breakpoints, w) {
			t.Fatalf("query %q gave width %d, not a breakpoint", query, w)
		}
		if q := req.Override.Quality; q != 0 && (q < cfg.Quality.Min || q > cfg.Quality.Max || q%cfg.Quality.Step != 0) {
			t.Fatalf("query %q gave quality %d outside the bounds", query, q)
		}
		if req.Preset != cfg.DefaultPreset && !contains(cfg.Presets, req.Preset) {
			t.Fatalf("query %q gave preset %q outside the allow-list", query, req.Preset)
		}
	})
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
