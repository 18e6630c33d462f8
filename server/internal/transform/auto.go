package transform

import (
	"context"
	"errors"
	"fmt"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/quality"
)

// Prepared is an image decoded, oriented and resized once, ready to be
// encoded at any quality and scored against itself.
type Prepared interface {
	// Encode encodes the prepared pixels with spec's format and quality.
	Encode(spec variant.Spec) (Output, error)
	// Score is the perceptual similarity (SSIMULACRA2, 100 = identical) of
	// an encoded image to the prepared pixels, as a viewer sees both. It
	// fails with ErrCannotScore for an image too small to score.
	Score(encoded []byte) (float64, error)
}

// AutoQuality tunes the perceptual quality search.
type AutoQuality struct {
	// Targets are the SSIMULACRA2 scores each format must reach: 90 is
	// visually lossless, 80 very high quality, 70 high, 50 medium.
	Targets map[variant.Format]float64
	// MinQuality and MaxQuality bound the search.
	MinQuality, MaxQuality int
	// Steps bounds the encodes per format (a bisection).
	Steps int
	// SkipJPEGAtOrBelow: a JPEG source whose estimated quality is at or
	// below this is not recompressed at its own size (it cannot pay).
	SkipJPEGAtOrBelow int
}

// DefaultAutoQuality is what an unset AutoQuality becomes.
var DefaultAutoQuality = AutoQuality{
	Targets:           map[variant.Format]float64{variant.FormatJPEG: 70, variant.FormatWebP: 70, variant.FormatAVIF: 70},
	MinQuality:        40,
	MaxQuality:        95,
	Steps:             6,
	SkipJPEGAtOrBelow: 70,
}

// errNotWorthIt says the original cannot be beaten: keep it, compute nothing.
var errNotWorthIt = errors.New("recompression cannot pay")

// Scored reports what the search chose.
type Scored struct {
	Spec  variant.Spec
	Score float64
}

// autoQuality encodes each candidate format at the lowest quality whose
// score meets the format's target (a bisection of at most Steps encodes) and
// returns the smallest result.
func (s *Service) autoQuality(ctx context.Context, data []byte, info ImageInfo, specs []variant.Spec) (Output, variant.Spec, error) {
	a := s.cfg.Auto
	sameSize := specs[0].Width == 0 && specs[0].Height == 0
	if sameSize && len(specs) == 1 && specs[0].Format == variant.FormatJPEG && info.Format == "jpeg" {
		if q, ok := quality.EstimateJPEGQuality(data); ok && q <= a.SkipJPEGAtOrBelow {
			return Output{}, variant.Spec{}, fmt.Errorf("%w: the source is already JPEG quality %d", errNotWorthIt, q)
		}
	}
	prep, err := s.proc.Prepare(data, Operation{Spec: specs[0], Source: info})
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	var best Output
	var bestSpec variant.Spec
	for _, spec := range specs {
		if err := ctx.Err(); err != nil {
			return Output{}, variant.Spec{}, err
		}
		out, chosen, err := s.search(prep, spec)
		if err != nil {
			return Output{}, variant.Spec{}, err
		}
		if best.Data == nil || len(out.Data) < len(best.Data) {
			best, bestSpec = out, chosen
		}
	}
	return best, bestSpec, nil
}

// search bisects the quality range for one format.
func (s *Service) search(prep Prepared, spec variant.Spec) (Output, variant.Spec, error) {
	a := s.cfg.Auto
	if !spec.Format.Lossy() {
		spec.Quality = 0
		out, err := prep.Encode(spec)
		return out, spec, err
	}
	target := a.Targets[spec.Format]
	lo, hi := a.MinQuality, a.MaxQuality
	var found bool
	var out Output
	var chosen variant.Spec
	for step := 0; step < a.Steps && lo <= hi; step++ {
		q := (lo + hi) / 2
		try := spec
		try.Quality = q
		enc, err := prep.Encode(try)
		if err != nil {
			return Output{}, spec, err
		}
		score, err := prep.Score(enc.Data)
		if errors.Is(err, ErrCannotScore) {
			// Too small to judge: the format's default quality.
			try.Quality = s.cfg.Defaults.Quality[spec.Format]
			enc, err := prep.Encode(try)
			return enc, try, err
		}
		if err != nil {
			return Output{}, spec, err
		}
		if score >= target {
			found, out, chosen = true, enc, try
			hi = q - 1
		} else {
			lo = q + 1
		}
	}
	if !found { // even the search's best guess fell short: the top of the range
		chosen = spec
		chosen.Quality = a.MaxQuality
		enc, err := prep.Encode(chosen)
		return enc, chosen, err
	}
	return out, chosen, nil
}
