package vp8l

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

// chunk is a WebP's VP8L chunk payload (LosslessWebP writes one chunk).
func chunk(webp []byte) []byte { return webp[20:] }

// TestRead: the groups libwebp builds tables for are counted as it counts
// them: the largest group named plus one, or, past 1,000 groups, the
// groups used, with the colour cache that sizes their tables. (Checked
// against libwebp 1.6.0's own count, instrumented, on these streams and on
// cwebp's lossless and near-lossless encodes and lossless alpha planes of
// the corpus: the same on all 69.)
func TestRead(t *testing.T) {
	for _, tt := range []struct {
		name              string
		width, height     int
		groups, cacheBits int
		subtractGreen     bool
		wantGroups        int
	}{
		{"one group", 64, 64, 1, 0, false, 1},
		{"16 groups, subtract-green", 64, 64, 16, 0, true, 16},
		{"1,000 groups, a colour cache of 3 bits", 256, 256, 1000, 3, true, 1000},
		{"1,001 groups, a colour cache of 11 bits", 256, 256, 1001, 11, false, 1001},
		{"more groups than blocks: the blocks'", 100, 30, 1000, 0, false, 25 * 8},
		{"65,536 groups", 1024, 1024, 65536, 0, false, 65536},
	} {
		t.Run(tt.name, func(t *testing.T) {
			codes, err := Read(chunk(testimages.LosslessWebP(tt.width, tt.height, tt.groups, tt.cacheBits, tt.subtractGreen)), 1<<30)
			if err != nil || codes.Groups != tt.wantGroups || codes.CacheBits != tt.cacheBits || codes.Pixels != int64(tt.width*tt.height) {
				t.Fatalf("Read: %+v, %v; want %d groups, %d cache bits, %d pixels", codes, err, tt.wantGroups, tt.cacheBits, tt.width*tt.height)
			}
			if want := int64(tt.wantGroups) * (tableEntries[tt.cacheBits]*4 + groupBytes); codes.TableBytes() != want {
				t.Errorf("TableBytes %d, want %d", codes.TableBytes(), want)
			}
		})
	}
}

// TestReadRefuses: what libwebp refuses before it allocates the groups'
// tables is refused here too, and counts nothing.
func TestReadRefuses(t *testing.T) {
	stream := chunk(testimages.LosslessWebP(256, 256, 1000, 0, false))
	versioned := append([]byte{}, stream...)
	versioned[4] |= 0x20 // version 1
	for name, data := range map[string][]byte{
		"not a VP8L stream":            []byte("VP8 data"),
		"version 1":                    versioned,
		"cut inside the entropy image": stream[:len(stream)/4],
		"the stream's signature alone": stream[:1],
		"garbage after the header":     append(stream[:5:5], 0xff, 0xff, 0xff, 0xff),
	} {
		if codes, err := Read(data, 1<<30); err == nil {
			t.Errorf("%s: %+v, want an error", name, codes)
		}
	}
	huge := append([]byte{}, stream...)
	binary.LittleEndian.PutUint32(huge[1:], 16383|16383<<14) // 16384×16384, version 0
	if _, err := Read(huge, 1<<28-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a stream of 16384×16384 given a pixel short: %v, want ErrTooLarge", err)
	}
	if _, err := Read(stream, 256*256-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a stream of 256×256 given a pixel short: %v, want ErrTooLarge", err)
	}
	if _, err := ReadAlpha(nil, 0, 10, 1<<30); !errors.Is(err, ErrNotVP8L) {
		t.Errorf("an alpha plane of no width: %v", err)
	}
}

// FuzzRead: whatever the stream, Read ends, and a count it gives is one
// libwebp could build.
func FuzzRead(f *testing.F) {
	f.Add(chunk(testimages.LosslessWebP(64, 64, 16, 0, true)))
	f.Add(chunk(testimages.LosslessWebP(32, 32, 64, 4, false)))
	f.Fuzz(func(t *testing.T, data []byte) {
		codes, err := Read(data, 1<<24)
		if err == nil && (codes.Groups < 1 || codes.Groups > 1<<16 || codes.CacheBits > 11) {
			t.Fatalf("%+v", codes)
		}
	})
}
