package variant

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

func TestFromProto(t *testing.T) {
	tests := map[string]struct {
		in   *imgedgev1.VariantSpec
		want Request
	}{
		"nil is the default preset": {nil, Request{}},
		"every field": {
			&imgedgev1.VariantSpec{Preset: "small", Width: proto.Uint32(300), Height: proto.Uint32(200), Fit: imgedgev1.Fit_FIT_COVER,
				Format: imgedgev1.Format_FORMAT_AVIF, Quality: proto.Uint32(60), Progressive: true, AutoQuality: true, TargetScore: proto.Uint32(80),
				Viewer: &imgedgev1.VariantSpec_FormatClass{FormatClass: imgedgev1.FormatClass_FORMAT_CLASS_WEBP}},
			Request{Preset: "small", Viewer: ClassWebP, Override: Spec{Width: 300, Height: 200, Fit: FitCover, Format: FormatAVIF,
				Quality: 60, Progressive: true, AutoQuality: true, TargetScore: 80}},
		},
		"a raw Accept header becomes its class": {
			&imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_AUTO, Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/avif,image/webp,*/*"}},
			Request{Viewer: ClassAVIF, Override: Spec{Format: FormatAuto}},
		},
		"an Accept header without modern formats is JPEG's class": {
			&imgedgev1.VariantSpec{Viewer: &imgedgev1.VariantSpec_Accept{Accept: "*/*"}},
			Request{Viewer: ClassJPEG},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := FromProto(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("FromProto = %+v, %v; want %+v", got, err, tt.want)
			}
			// The wire form round-trips (a raw Accept travels back as its class).
			again, err := FromProto(got.Proto())
			if err != nil || again != got {
				t.Errorf("FromProto(Proto()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestFromProtoReportsEveryProblem(t *testing.T) {
	_, err := FromProto(&imgedgev1.VariantSpec{Width: proto.Uint32(0), Height: proto.Uint32(1 << 21), Quality: proto.Uint32(101), Fit: 9, Format: 42,
		TargetScore: proto.Uint32(0), Viewer: &imgedgev1.VariantSpec_FormatClass{FormatClass: 7}})
	for _, part := range []string{"width 0", "height 2097152", "quality 101", "target_score 0", "unknown fit 9", "unknown format 42", "unknown format class 7"} {
		if err == nil || !strings.Contains(err.Error(), part) || !errors.Is(err, ErrInvalid) {
			t.Errorf("FromProto error %v, want it to mention %q", err, part)
		}
	}
	if _, err := FromProto(&imgedgev1.VariantSpec{TargetScore: proto.Uint32(101)}); err == nil || !strings.Contains(err.Error(), "target_score 101") {
		t.Errorf("target_score 101: %v", err)
	}
}

// TestEnumsLineUpWithTheWire: the domain's enums are the wire's by value,
// for every value either side defines.
func TestEnumsLineUpWithTheWire(t *testing.T) {
	check := func(kind string, wire map[int32]string, name func(int32) string, prefix string, count int) {
		t.Helper()
		if len(wire) != count {
			t.Errorf("%s: the proto has %d values, the domain %d", kind, len(wire), count)
		}
		for v, wireName := range wire {
			want := prefix + "UNSPECIFIED"
			if n := name(v); n != "" {
				want = prefix + strings.ToUpper(n)
			}
			if wireName != want {
				t.Errorf("%s %d: proto %s, domain %q", kind, v, wireName, name(v))
			}
		}
	}
	check("Format", imgedgev1.Format_name, func(v int32) string { return Format(v).String() }, "FORMAT_", len(formatInfo))
	check("Fit", imgedgev1.Fit_name, func(v int32) string { return Fit(v).String() }, "FIT_", len(fitNames))
	check("FormatClass", imgedgev1.FormatClass_name, func(v int32) string { return Class(v).String() }, "FORMAT_CLASS_", len(classNames))
}
