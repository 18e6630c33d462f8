package imaging

import (
	"bytes"
	"encoding/binary"
	"image/color"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/iccprofile"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// padded is profile with n zero bytes after it, its stated size grown to
// match: lcms opens it as the profile, and a PNG compresses the zeros away.
func padded(profile []byte, n int) []byte {
	p := append(append([]byte{}, profile...), make([]byte, n)...)
	binary.BigEndian.PutUint32(p, uint32(len(p)))
	return p
}

// TestProfileCost: an embedded ICC profile whose colour transform would
// cost more to build than any profile in use is refused from the header:
// float tags listing their elements thousands of times, a profile past 16
// MiB (a PNG's refused before libpng inflates it). A profile within the
// limits is held in the image's memory estimate, and converts.
func TestProfileCost(t *testing.T) {
	jpg, png := testimages.JPEG(320, 240, 90), testimages.PNG(320, 240)
	inJPEG := func(p []byte) []byte { return testimages.WithAPP2Profile(jpg, p) }
	inPNG := func(p []byte) []byte { return testimages.WithICCP(png, p) }
	small := testimages.FloatProfile(2)
	tests := []struct {
		name    string
		embed   func([]byte) []byte
		profile []byte
		want    error
		message string
	}{
		{"a JPEG, float tags of 4 steps", inJPEG, small, nil, ""},
		{"a JPEG, float tags of 256 steps", inJPEG, testimages.FloatProfile(128), nil, ""},
		{"a JPEG, float tags of 257 steps", inJPEG, testimages.FloatProfile(129), transform.ErrUnsupportedImage, "at least 257 steps"},
		{"a JPEG, float tags of 20,000 steps", inJPEG, testimages.FloatProfile(10000), transform.ErrUnsupportedImage, "(D2B0, D2B1, D2B2) take each colour through at least 20000 steps"},
		{"a PNG, float tags of 20,000 steps", inPNG, testimages.FloatProfile(10000), transform.ErrUnsupportedImage, "at least 20000 steps"},
		{"a PNG, a profile of 8 MiB", inPNG, padded(small, 8<<20), nil, ""},
		{"a PNG, a profile of 16 MiB and a byte", inPNG, padded(small, 16<<20+1-len(small)), transform.ErrTooLarge, "inflates past 16777216 bytes"},
		{"a JPEG, no profile but bytes in its place", inJPEG, bytes.Repeat([]byte("not a colour profile "), 40), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probeTakes(t, tt.embed(tt.profile), tt.want, tt.message, profileHeld*int64(len(tt.profile)))
		})
	}
}

// TestFloatTagsDecide: lcms builds the colour transform from an input
// profile's float tag (D2B0–D2B3) where it has one, not from its matrix and
// curves: the steps checkProfile counts are the ones lcms takes. A profile
// whose float tags swap red and blue turns a red image blue.
func TestFloatTagsDecide(t *testing.T) {
	m := [9]float32{ // sRGB's matrix to D50 XYZ, its red and blue columns swapped
		0.1430804, 0.3850649, 0.4360747,
		0.0606169, 0.7168786, 0.2225045,
		0.7141733, 0.0970045, 0.0139322,
	}
	identity := [9]float32{1, 0, 0, 0, 1, 0, 0, 0, 1}
	// FloatProfile's float tags, their matrix swapped: the same length.
	swapped := testimages.MultiProcessElements([][]byte{
		testimages.CurveSetElement(2.2), testimages.MatrixElement(m), testimages.MatrixElement(identity), testimages.CurveSetElement(1),
	}, []int{0, 1})
	srgb := testimages.FloatProfile(2)
	profile := bytes.Clone(srgb)
	copy(profile[bytes.Index(profile, []byte("mpet")):], swapped)
	if p, err := iccprofile.Read(profile); err != nil || p.FloatSteps != 4 || bytes.Equal(profile, srgb) {
		t.Fatalf("the swapped float tags: %+v, %v", p, err)
	}
	red := testimages.JPEG(64, 64, 95) // its top-left quadrant is red
	for name, tt := range map[string]struct {
		profile []byte
		want    color.RGBA
	}{
		"float tags as the matrix":         {srgb, testimages.TopLeft},
		"float tags swapping red and blue": {profile, color.RGBA{testimages.TopLeft.B, testimages.TopLeft.G, testimages.TopLeft.R, 255}},
	} {
		_, img := run(t, testimages.WithAPP2Profile(red, tt.profile), variant.Spec{Format: variant.FormatPNG})
		if !testimages.Near(img.At(8, 8), tt.want, 24) {
			t.Errorf("%s: top-left %v, want near %v", name, img.At(8, 8), tt.want)
		}
	}
}
