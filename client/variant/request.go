package variant

import (
	"errors"
	"fmt"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// Request is a variant as a caller asks for it: a named preset ("" for the
// server's default), overridden by every field Override specifies, for a
// viewer of class Viewer. It is the domain side of imgedge.v1.VariantSpec;
// FromProto and Proto are the one mapping between the two.
type Request struct {
	Preset   string
	Override Spec
	Viewer   Class
}

// maxDimension bounds a wire dimension before any server limit applies.
const maxDimension = 1 << 20

// FromProto validates a wire VariantSpec and returns the request it asks
// for. A nil spec is the default preset. Absent optional fields defer to the
// preset; present ones must be in range. A raw Accept header is reduced to
// its class here. Every problem is reported at once, wrapping ErrInvalid.
func FromProto(p *imgedgev1.VariantSpec) (Request, error) {
	if p == nil {
		return Request{}, nil
	}
	var errs []error
	dim := func(name string, v *uint32) int {
		if v == nil {
			return 0
		}
		if *v == 0 || *v > maxDimension {
			errs = append(errs, fmt.Errorf("%s %d is out of range: give a positive number of pixels, or leave it out to use the preset's", name, *v))
			return 0
		}
		return int(*v)
	}
	r := Request{Preset: p.GetPreset(), Override: Spec{
		Width:       dim("width", p.Width),
		Height:      dim("height", p.Height),
		Fit:         Fit(p.GetFit()),
		Format:      Format(p.GetFormat()),
		Progressive: p.GetProgressive(),
		AutoQuality: p.GetAutoQuality(),
	}}
	if q := p.Quality; q != nil {
		if *q < 1 || *q > 100 {
			errs = append(errs, fmt.Errorf("quality %d is out of range (1–100)", *q))
		} else {
			r.Override.Quality = int(*q)
		}
	}
	if t := p.TargetScore; t != nil {
		if *t < 1 || *t > 100 {
			errs = append(errs, fmt.Errorf("target_score %d is out of range: give a SSIMULACRA2 score 1–100 (70 high, 80 very high, 90 visually lossless), or leave it out to use the preset's or the server's", *t))
		} else {
			r.Override.TargetScore = int(*t)
		}
	}
	if _, ok := imgedgev1.Fit_name[int32(p.GetFit())]; !ok {
		errs = append(errs, fmt.Errorf("unknown fit %d", p.GetFit()))
	}
	if _, ok := imgedgev1.Format_name[int32(p.GetFormat())]; !ok {
		errs = append(errs, fmt.Errorf("unknown format %d", p.GetFormat()))
	}
	switch v := p.GetViewer().(type) {
	case *imgedgev1.VariantSpec_Accept:
		r.Viewer = ParseAccept(v.Accept)
	case *imgedgev1.VariantSpec_FormatClass:
		r.Viewer = Class(v.FormatClass)
		if _, ok := imgedgev1.FormatClass_name[int32(v.FormatClass)]; !ok {
			errs = append(errs, fmt.Errorf("unknown format class %d", v.FormatClass))
		}
	}
	if len(errs) > 0 {
		return Request{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return r, nil
}

// Proto returns the wire form of r. Unspecified fields stay absent, so the
// server's preset decides them.
func (r Request) Proto() *imgedgev1.VariantSpec {
	o := r.Override
	p := &imgedgev1.VariantSpec{
		Preset:      r.Preset,
		Fit:         imgedgev1.Fit(o.Fit),
		Format:      imgedgev1.Format(o.Format),
		Progressive: o.Progressive,
		AutoQuality: o.AutoQuality,
	}
	if o.Width > 0 {
		p.Width = uint32Ptr(o.Width)
	}
	if o.Height > 0 {
		p.Height = uint32Ptr(o.Height)
	}
	if o.Quality > 0 {
		p.Quality = uint32Ptr(o.Quality)
	}
	if o.TargetScore > 0 {
		p.TargetScore = uint32Ptr(o.TargetScore)
	}
	if r.Viewer != ClassUnspecified {
		p.Viewer = &imgedgev1.VariantSpec_FormatClass{FormatClass: imgedgev1.FormatClass(r.Viewer)}
	}
	return p
}

func uint32Ptr(n int) *uint32 {
	v := uint32(n)
	return &v
}
