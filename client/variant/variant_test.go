package variant

import (
	"errors"
	"strings"
	"testing"
)

var defaults = Defaults{
	Quality:     map[Format]int{FormatJPEG: 80, FormatWebP: 75, FormatAVIF: 50},
	Negotiation: Negotiation{AVIF: true, WebP: true},
}

func TestResolveAndCanonical(t *testing.T) {
	tests := []struct {
		name      string
		spec      Spec
		accept    string
		canonical string
		format    Format
	}{
		{"prototype default", Spec{Format: FormatJPEG, Quality: 90}, "", "full_q90", FormatJPEG},
		{"width only", Spec{Width: 720, Format: FormatJPEG}, "", "w720_q80", FormatJPEG},
		{"fit dropped without both sides", Spec{Width: 720, Fit: FitCover, Format: FormatWebP}, "", "w720_q75", FormatWebP},
		{"cover", Spec{Width: 320, Height: 320, Fit: FitCover, Format: FormatWebP, Quality: 70}, "", "w320_h320_cover_q70", FormatWebP},
		{"fill", Spec{Width: 10, Height: 20, Fit: FitFill, Format: FormatPNG, Quality: 70}, "", "w10_h20_fill", FormatPNG},
		{"auto picks avif", Spec{Width: 100, Format: FormatAuto}, "image/avif,image/webp,*/*", "w100_q50", FormatAVIF},
		{"auto picks webp", Spec{Width: 100, Format: FormatAuto}, "image/webp,*/*;q=0.8", "w100_q75", FormatWebP},
		{"auto falls back to jpeg", Spec{Width: 100, Format: FormatAuto}, "*/*", "w100_q80", FormatJPEG},
		{"avif refused by q=0", Spec{Height: 50, Format: FormatAuto}, "image/avif;q=0, image/webp", "h50_q75", FormatWebP},
		{"progressive jpeg", Spec{Width: 1, Format: FormatJPEG, Progressive: true}, "", "w1_q80_prog", FormatJPEG},
		{"progressive dropped for webp", Spec{Width: 1, Format: FormatWebP, Progressive: true}, "", "w1_q75", FormatWebP},
		{"auto quality: the server's target", Spec{Width: 720, Format: FormatWebP, AutoQuality: true}, "", "w720_qauto", FormatWebP},
		{"a target implies auto quality", Spec{Width: 720, Format: FormatAVIF, TargetScore: 80}, "", "w720_qauto80", FormatAVIF},
		{"a target beats a fixed quality", Spec{Width: 720, Format: FormatJPEG, Quality: 85, TargetScore: 65}, "", "w720_qauto65", FormatJPEG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.spec.Resolve(ParseAccept(tt.accept), defaults)[0]
			if got := r.Canonical(); got != tt.canonical {
				t.Errorf("Canonical() = %q, want %q", got, tt.canonical)
			}
			if r.Format != tt.format {
				t.Errorf("Format = %v, want %v", r.Format, tt.format)
			}
			back, err := ParseCanonical(r.Canonical())
			if err != nil {
				t.Fatalf("ParseCanonical(%q): %v", r.Canonical(), err)
			}
			back.Format = r.Format
			if back != r {
				t.Errorf("round trip: got %+v, want %+v", back, r)
			}
		})
	}
}

func TestForTranslucent(t *testing.T) {
	webpFallback := Defaults{Quality: defaults.Quality, Negotiation: Negotiation{Fallback: FormatWebP}}
	tests := []struct {
		name      string
		spec      Spec
		accept    string
		d         Defaults
		canonical string // "" when there is none
	}{
		{"auto, JPEG-only viewer", Spec{Width: 100, Format: FormatAuto}, "*/*", defaults, "w100"},
		{"no format, no Accept header", Spec{Width: 100}, "", defaults, "w100"},
		{"auto-quality: a palette searched at the request's target", Spec{Width: 100, Format: FormatAuto, TargetScore: 80}, "", defaults, "w100_qauto80"},
		{"best, JPEG-only viewer: a palette searched", Spec{Width: 100, Format: FormatBest}, "*/*", defaults, "w100_qauto"},
		{"auto, WebP viewer: WebP keeps alpha", Spec{Width: 100, Format: FormatAuto}, "image/webp", defaults, ""},
		{"best, AVIF viewer", Spec{Width: 100, Format: FormatBest}, "image/avif", defaults, ""},
		{"a JPEG asked for by name", Spec{Width: 100, Format: FormatJPEG}, "", defaults, ""},
		{"a fallback that keeps alpha", Spec{Width: 100, Format: FormatAuto}, "", webpFallback, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.spec.ForTranslucent(ParseAccept(tt.accept), tt.d)
			if want := tt.canonical != ""; ok != want {
				t.Fatalf("ForTranslucent = %+v, %v; want ok %v", got, ok, want)
			}
			if !ok {
				return
			}
			if got.Format != FormatPNG || got.Quality != 0 || got.Canonical() != tt.canonical {
				t.Errorf("ForTranslucent = %+v (%q), want PNG %q", got, got.Canonical(), tt.canonical)
			}
			// The key an explicit PNG of the same variant has, with the
			// same auto quality.
			explicit := Spec{Width: 100, Format: FormatPNG, AutoQuality: got.AutoQuality, TargetScore: got.TargetScore}.Resolve(ClassJPEG, tt.d)[0]
			if Key("v/", "a.png", got) != Key("v/", "a.png", explicit) {
				t.Errorf("key %q, an explicit PNG's %q", Key("v/", "a.png", got), Key("v/", "a.png", explicit))
			}
		})
	}
}

// TestClassFallbacks: each fallback class's viewers decode only formats
// the class's own viewers decode.
func TestClassFallbacks(t *testing.T) {
	for _, c := range []Class{ClassUnspecified, ClassJPEG, ClassWebP, ClassAVIF} {
		for _, lower := range c.Fallbacks() {
			if lower >= c {
				t.Errorf("%s falls back to %s", c, lower)
			}
			for _, f := range []Format{FormatJPEG, FormatWebP, FormatAVIF, FormatPNG} {
				if lower.accepts(f) && !c.accepts(f) {
					t.Errorf("%s falls back to %s, which decodes %s", c, lower, f)
				}
			}
		}
	}
	if got := ClassAVIF.Fallbacks(); len(got) != 2 || got[0] != ClassWebP || got[1] != ClassJPEG {
		t.Errorf("AVIF falls back to %v, want WebP, then JPEG", got)
	}
	if len(ClassJPEG.Fallbacks()) != 0 || len(ClassUnspecified.Fallbacks()) != 0 {
		t.Error("a JPEG-only viewer has fallbacks")
	}
}

func TestNegotiationDisabledFormats(t *testing.T) {
	n := Negotiation{AVIF: false, WebP: true}
	if got := n.Choose(ClassAVIF); got != FormatWebP {
		t.Errorf("Choose with AVIF off = %v, want webp", got)
	}
	n = Negotiation{Fallback: FormatPNG}
	if got := n.Choose(ClassAVIF); got != FormatPNG {
		t.Errorf("Choose with both off = %v, want the png fallback", got)
	}
}

func TestValidate(t *testing.T) {
	limits := Limits{MaxWidth: 8192, MaxHeight: 8192}
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"ok", Spec{Width: 8192, Height: 10, Quality: 100}, ""},
		{"too wide", Spec{Width: 100000}, "width 100000 is out of range"},
		{"too tall", Spec{Height: 8193}, "height 8193 is out of range"},
		{"negative", Spec{Width: -1}, "width -1"},
		{"quality", Spec{Quality: 101}, "quality 101"},
		{"cover needs both", Spec{Width: 10, Fit: FitCover}, "cover needs both"},
		{"all at once", Spec{Width: 100000, Quality: 200}, "quality 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate(limits)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want an ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseCanonicalRejects(t *testing.T) {
	for _, s := range []string{"", "w", "w0", "w007", "q80_w720", "w720__q80", "w720_x", "full_w10", "w1234567", "w720_inside_q80", "cover_q80"} {
		if _, err := ParseCanonical(s); err == nil {
			t.Errorf("ParseCanonical(%q) succeeded, want an error", s)
		}
	}
}

func TestValidateKey(t *testing.T) {
	good := []string{"a.jpg", "photos/cat.jpg", "사진/고양이 1.jpg", "a+b (1).jpeg", "x/.hidden.png", "a..b.jpg"}
	for _, k := range good {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	bad := []string{"", "/abs.jpg", "a/../b.jpg", "..", "../x", "a//b.jpg", "a/./b", "dir/", "a\\b.jpg", "a\x00b", "tab\tkey", "\xff.jpg", strings.Repeat("a", MaxKeyBytes+1)}
	for _, k := range bad {
		if err := ValidateKey(k); !errors.Is(err, ErrBadKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrBadKey", k, err)
		}
	}
}

func TestKeyRoundTrip(t *testing.T) {
	specs := []Spec{
		Spec{Format: FormatJPEG, Quality: 90}.Resolve(ClassJPEG, defaults)[0],
		Spec{Width: 320, Height: 320, Fit: FitCover, Format: FormatAuto}.Resolve(ClassAVIF, defaults)[0],
		Spec{Width: 64, Format: FormatPNG}.Resolve(ClassJPEG, defaults)[0],
	}
	for _, s := range specs {
		for _, source := range []string{"cat.jpg", "photos/2024/사진.jpeg", "a.jpg.webp"} {
			key := Key(DefaultPrefix, source, s)
			gotSource, gotSpec, err := ParseKey(DefaultPrefix, key)
			if err != nil {
				t.Fatalf("ParseKey(%q): %v", key, err)
			}
			if gotSource != source || gotSpec != s {
				t.Errorf("ParseKey(%q) = %q, %+v; want %q, %+v", key, gotSource, gotSpec, source, s)
			}
		}
	}
	if got := Key(DefaultPrefix, "photos/cat.jpg", specs[1]); got != "ProcessedImages/w320_h320_cover_q50/photos/cat.jpg.avif" {
		t.Errorf("Key = %q", got)
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, k := range []string{
		"other/w1_q80/a.jpg.jpg",
		"ProcessedImages/w1_q80",
		"ProcessedImages/w1_q80/a",
		"ProcessedImages/w1_q80/a.gif",
		"ProcessedImages/w1/a.jpg.jpg",       // lossy without quality
		"ProcessedImages/w1_q80/a.png.png",   // lossless with quality
		"ProcessedImages/w1_q80_prog/a.webp", // progressive webp
		"ProcessedImages/w1_q80/../a.jpg",
	} {
		if _, _, err := ParseKey(DefaultPrefix, k); err == nil {
			t.Errorf("ParseKey(%q) succeeded, want an error", k)
		}
	}
}

func TestParseFormatAndFit(t *testing.T) {
	for in, want := range map[string]Format{"jpg": FormatJPEG, "JPEG": FormatJPEG, "webp": FormatWebP, "avif": FormatAVIF, "png": FormatPNG, "auto": FormatAuto, "": FormatUnspecified} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseFormat("gif"); err == nil {
		t.Error("ParseFormat(gif) succeeded")
	}
	for in, want := range map[string]Fit{"inside": FitInside, "Cover": FitCover, "fill": FitFill, "": FitUnspecified} {
		if got, err := ParseFit(in); err != nil || got != want {
			t.Errorf("ParseFit(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseFit("contain"); err == nil {
		t.Error("ParseFit(contain) succeeded")
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("ProcessedImages/w720_q80/photos/cat.jpg.jpg")
	f.Add("ProcessedImages/w320_h320_cover_q50/사진/a b.jpg.avif")
	f.Add("ProcessedImages/full/x.png.png")
	f.Add("ProcessedImages/w1600_qauto80/photos/cat.jpg.avif")
	f.Add("ProcessedImages/../../etc/passwd.jpg")
	f.Fuzz(func(t *testing.T, key string) {
		source, spec, err := ParseKey(DefaultPrefix, key)
		if err != nil {
			return
		}
		if err := ValidateKey(source); err != nil {
			t.Fatalf("ParseKey(%q) returned an invalid source %q: %v", key, source, err)
		}
		if again := Key(DefaultPrefix, source, spec); again != key {
			t.Fatalf("Key(ParseKey(%q)) = %q", key, again)
		}
	})
}

func FuzzParseCanonical(f *testing.F) {
	for _, s := range []string{"full_q90", "w720_q80", "w320_h320_cover_q75_prog", "h1_fill", "w720_qauto", "w720_qauto80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseCanonical(s)
		if err != nil {
			return
		}
		if spec.Canonical() != s {
			t.Fatalf("Canonical(ParseCanonical(%q)) = %q", s, spec.Canonical())
		}
	})
}

func FuzzParseAccept(f *testing.F) {
	f.Add("image/avif,image/webp,image/apng,*/*;q=0.8")
	f.Add("image/webp;q=0")
	f.Fuzz(func(t *testing.T, header string) {
		c := ParseAccept(header)
		if c == ClassAVIF && !strings.Contains(strings.ToLower(header), "image/avif") {
			t.Fatalf("ParseAccept(%q) claims AVIF", header)
		}
		if c == ClassWebP && !strings.Contains(strings.ToLower(header), "image/webp") {
			t.Fatalf("ParseAccept(%q) claims WebP", header)
		}
		if c != ClassJPEG && c != ClassWebP && c != ClassAVIF {
			t.Fatalf("ParseAccept(%q) = %v", header, c)
		}
	})
}

func TestAutoQualityAndBest(t *testing.T) {
	auto := Spec{Width: 720, Format: FormatWebP, AutoQuality: true, Quality: 70}.Resolve(ClassJPEG, defaults)[0]
	if auto.Canonical() != "w720_qauto" || auto.Quality != 0 {
		t.Errorf("auto: %+v %q", auto, auto.Canonical())
	}
	key := Key(DefaultPrefix, "a.jpg", auto)
	if src, back, err := ParseKey(DefaultPrefix, key); err != nil || src != "a.jpg" || back != auto {
		t.Errorf("ParseKey(%q) = %q %+v %v", key, src, back, err)
	}
	best := Spec{Width: 720, Format: FormatBest}.Resolve(ClassAVIF, defaults)
	if len(best) != 3 || best[0].Format != FormatAVIF || best[1].Format != FormatWebP || best[2].Format != FormatJPEG {
		t.Fatalf("best for an AVIF viewer: %+v", best)
	}
	for _, s := range best {
		if !s.AutoQuality || s.Quality != 0 || s.Canonical() != "w720_qauto" {
			t.Errorf("best candidate %+v %q: want auto-quality", s, s.Canonical())
		}
	}
	n := Negotiation{AVIF: true, WebP: true}
	if got := n.Candidates(ClassAVIF); len(got) != 3 || got[0] != FormatAVIF || got[2] != FormatJPEG {
		t.Errorf("candidates: %v", got)
	}
	if got := n.Candidates(ParseAccept("*/*")); len(got) != 1 || got[0] != FormatJPEG {
		t.Errorf("candidates for */*: %v", got)
	}
	if _, s, err := ParseKey(DefaultPrefix, "ProcessedImages/w1_qauto/a.png.png"); err != nil || !s.AutoQuality || s.Format != FormatPNG {
		t.Errorf("qauto PNG key (a searched palette): %+v, %v", s, err)
	}
	if _, _, err := ParseKey(DefaultPrefix, "ProcessedImages/w1_q80/a.png.png"); err == nil {
		t.Error("a PNG key with a fixed quality accepted")
	}
}

// TestTargetScore: a target of its own turns auto-quality on (for PNG, a
// palette search), is the same for every format "best" compares, and is
// dropped where no search runs, so that equal outputs keep equal keys (the
// round trips are in TestResolveAndCanonical).
func TestTargetScore(t *testing.T) {
	if png := (Spec{Width: 720, Format: FormatPNG, TargetScore: 80}).Resolve(ClassJPEG, defaults)[0]; png.Canonical() != "w720_qauto80" || !png.AutoQuality {
		t.Errorf("PNG with a target: %+v %q, want a palette search at 80", png, png.Canonical())
	}
	if png := (Spec{Width: 720, Format: FormatPNG, Quality: 60}).Resolve(ClassJPEG, defaults)[0]; png.Canonical() != "w720" || png.Quality != 0 {
		t.Errorf("PNG with a quality: %+v %q, want lossless", png, png.Canonical())
	}
	for _, s := range (Spec{Format: FormatBest, TargetScore: 85}).Resolve(ClassAVIF, defaults) {
		if s.TargetScore != 85 || s.Canonical() != "full_qauto85" {
			t.Errorf("best candidate %+v %q: want the request's target", s, s.Canonical())
		}
	}
	if got := (Spec{Format: FormatJPEG, AutoQuality: true, TargetScore: 80}).Override(Spec{TargetScore: 90}); got.TargetScore != 90 {
		t.Errorf("a request's target does not override the preset's: %+v", got)
	}
	for _, bad := range []string{"w720_qauto0", "w720_qauto101", "w720_qauto080", "w720_qautox", "w720_qauto+8"} {
		if s, err := ParseCanonical(bad); err == nil {
			t.Errorf("ParseCanonical(%q) = %+v, want an error", bad, s)
		}
	}
	if _, s, err := ParseKey(DefaultPrefix, "ProcessedImages/w1_qauto80/a.png.png"); err != nil || s.TargetScore != 80 {
		t.Errorf("a PNG key with a target: %+v, %v", s, err)
	}
	if err := (Spec{TargetScore: 101}).Validate(Limits{}); err == nil || !strings.Contains(err.Error(), "target score 101") {
		t.Errorf("Validate(target 101) = %v", err)
	}
}

func TestOverride(t *testing.T) {
	preset := Spec{Format: FormatJPEG, Quality: 90, Width: 480}
	tests := []struct {
		name string
		o    Spec
		want Spec
	}{
		{"nothing", Spec{}, preset},
		{"width", Spec{Width: 320}, Spec{Format: FormatJPEG, Quality: 90, Width: 320}},
		{"another format takes its default quality", Spec{Format: FormatWebP}, Spec{Format: FormatWebP, Width: 480}},
		{"another format with a quality", Spec{Format: FormatWebP, Quality: 60}, Spec{Format: FormatWebP, Quality: 60, Width: 480}},
		{"the same format keeps the quality", Spec{Format: FormatJPEG}, preset},
		{"a quality alone", Spec{Quality: 70}, Spec{Format: FormatJPEG, Quality: 70, Width: 480}},
	}
	for _, tt := range tests {
		if got := preset.Override(tt.o); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
