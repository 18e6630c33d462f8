// Package vp8l reads a WebP lossless (VP8L) bitstream as far as its prefix
// codes: the transforms, the colour cache, and the entropy image that
// assigns each block of the image one of up to 65,536 groups of prefix
// codes. libwebp allocates lookup tables for every group it finds before it
// decodes a pixel, about 12–20 KB each, so a small stream that lists many
// groups costs far more memory than its image: a 295 KB stream of a
// 1024×1024 image using 65,536 groups took a server's peak RSS up by 368
// MB. Read reports the groups libwebp will build, decoding the transform
// and entropy sub-images as libwebp does (prefix codes, LZ77 backward
// references, colour cache), and nothing of the image's own pixels.
package vp8l

import (
	"errors"
	"fmt"
)

// ErrNotVP8L reports data that does not start as a VP8L stream does.
var ErrNotVP8L = errors.New("vp8l: not a WebP lossless stream")

// Reading a stream's codes costs time and memory in proportion to its
// image's pixels, not to its bytes: its transforms' and entropy images
// hold a pixel for each block of 4×4 or more, and their codes may read
// every pixel in no bits, so a few bytes may declare sub-images of 16
// million pixels. Read and ReadAlpha are given the most pixels they may
// read, and refuse a larger image with ErrTooLarge.

// ErrTooLarge reports a stream whose image has more pixels than the
// reader was given.
var ErrTooLarge = errors.New("vp8l: an image too large to read its codes")

// Worst is the most any stream's codes may take: 65,536 groups, with the
// largest colour cache (1.3 GB of tables).
var Worst = Codes{Groups: 1 << 16, CacheBits: 11}

// Codes is what a stream's main image (or alpha plane) declares about its
// prefix codes.
type Codes struct {
	// Groups is how many groups of prefix codes libwebp allocates tables
	// for: the largest group the entropy image names, plus one, or, where
	// that is over 1,000 or the image's pixels, the groups it uses.
	Groups int
	// CacheBits is the colour cache's size in bits (0: none), which sizes
	// the green code's alphabet and so each group's tables.
	CacheBits int
	// Pixels is the image's, as the stream declares it; an error after the
	// stream's size is read reports it too.
	Pixels int64
}

// tableEntries is how many 4-byte entries libwebp allocates for one
// group's lookup tables, by colour cache bits (its kTableSize: the worst
// case of each alphabet with 8-bit root tables).
var tableEntries = [12]int64{2954, 2956, 2958, 2962, 2970, 2986, 3018, 3082, 3212, 3468, 3980, 5004}

// groupBytes is libwebp's HTreeGroup: five table pointers, its flags and
// its packed table of 64 8-byte entries.
const groupBytes = 568

// TableBytes is the memory libwebp allocates for the codes' lookup tables
// and groups while it decodes the image.
func (c Codes) TableBytes() int64 {
	return int64(c.Groups) * (tableEntries[c.CacheBits]*4 + groupBytes)
}

// Read reads a VP8L chunk's payload: its signature byte, its size and
// alpha fields, then the image stream, of at most maxPixels.
func Read(chunk []byte, maxPixels int64) (Codes, error) {
	if len(chunk) < 5 || chunk[0] != 0x2f {
		return Codes{}, ErrNotVP8L
	}
	r := &bitReader{data: chunk[1:]}
	width, height := int(r.read(14))+1, int(r.read(14))+1
	r.read(1) // alpha is used
	if version := r.read(3); version != 0 {
		return Codes{}, fmt.Errorf("vp8l: version %d", version)
	}
	return readImage(r, width, height, maxPixels)
}

// ReadAlpha reads an ALPH chunk's losslessly compressed plane, the bytes
// after the chunk's one-byte header: an image stream without VP8L's
// signature and size, of the image's width and height, of at most
// maxPixels.
func ReadAlpha(stream []byte, width, height int, maxPixels int64) (Codes, error) {
	if width < 1 || height < 1 {
		return Codes{}, ErrNotVP8L
	}
	return readImage(&bitReader{data: stream}, width, height, maxPixels)
}

// readImage reads the main image's stream up to the end of its prefix
// codes (DecodeImageStream at level 0).
func readImage(r *bitReader, width, height int, maxPixels int64) (Codes, error) {
	pixels := int64(width) * int64(height)
	// What is read costs in proportion to the pixels, whether or not the
	// stream turns out whole: an error still reports them.
	failed := Codes{Pixels: pixels}
	if pixels > maxPixels {
		return failed, ErrTooLarge
	}
	xsize := width
	seen := 0
	for r.read(1) == 1 {
		kind := int(r.read(2))
		if seen&(1<<kind) != 0 {
			return failed, fmt.Errorf("vp8l: transform %d twice", kind)
		}
		seen |= 1 << kind
		switch kind {
		case 0, 1: // predictor, cross-colour: a sub-image of their blocks
			bits := int(r.read(3)) + 2
			if _, err := readSubImage(r, subSample(xsize, bits), subSample(height, bits)); err != nil {
				return failed, err
			}
		case 3: // colour indexing: a palette, and pixels bundled
			colours := int(r.read(8)) + 1
			bits := 0
			switch {
			case colours <= 2:
				bits = 3
			case colours <= 4:
				bits = 2
			case colours <= 16:
				bits = 1
			}
			if _, err := readSubImage(r, colours, 1); err != nil {
				return failed, err
			}
			xsize = subSample(xsize, bits)
		}
		if r.eos() {
			return failed, errEOS
		}
	}
	cacheBits, err := readCacheBits(r)
	if err != nil {
		return failed, err
	}
	codes := Codes{Groups: 1, CacheBits: cacheBits, Pixels: pixels}
	if r.read(1) == 1 { // meta prefix codes: an entropy image of groups
		bits := int(r.read(3)) + 2
		entropy, err := readSubImage(r, subSample(xsize, bits), subSample(height, bits))
		if err != nil {
			return failed, err
		}
		var used [1 << 16]bool
		largest, distinct := 0, 0
		for _, p := range entropy {
			group := (p >> 8) & 0xffff
			largest = max(largest, int(group))
			if !used[group] {
				used[group] = true
				distinct++
			}
		}
		codes.Groups = largest + 1
		if codes.Groups > 1000 || codes.Groups > xsize*height {
			codes.Groups = distinct
		}
	}
	if r.eos() {
		return failed, errEOS
	}
	return codes, nil
}

var errEOS = errors.New("vp8l: the stream ends inside its header")

func subSample(size, bits int) int { return (size + 1<<bits - 1) >> bits }

func readCacheBits(r *bitReader) (int, error) {
	if r.read(1) == 0 {
		return 0, nil
	}
	bits := int(r.read(4))
	if bits < 1 || bits > 11 {
		return 0, fmt.Errorf("vp8l: colour cache of %d bits", bits)
	}
	return bits, nil
}

// alphabet sizes of a group's five codes: green (with the length prefixes,
// and the colour cache), red, blue, alpha, distance.
var alphabets = [5]int{256 + 24, 256, 256, 256, 40}

// readSubImage decodes a transform's or the entropy image's pixels
// (DecodeImageStream below level 0, then DecodeImageData): one group of
// prefix codes, literals, backward references and colour cache hits.
func readSubImage(r *bitReader, width, height int) ([]uint32, error) {
	cacheBits, err := readCacheBits(r)
	if err != nil {
		return nil, err
	}
	var group [5]prefixCode
	for i, size := range alphabets {
		if i == 0 && cacheBits > 0 {
			size += 1 << cacheBits
		}
		if group[i], err = readPrefixCode(r, size); err != nil {
			return nil, err
		}
	}
	var cache []uint32
	if cacheBits > 0 {
		cache = make([]uint32, 1<<cacheBits)
	}
	insert := func(argb uint32) {
		if cache != nil {
			cache[(argb*0x1e35a7bd)>>(32-cacheBits)] = argb
		}
	}
	pixels := make([]uint32, width*height)
	for at := 0; at < len(pixels); {
		green := group[0].decode(r)
		switch {
		case green < 256:
			red, blue, alpha := group[1].decode(r), group[2].decode(r), group[3].decode(r)
			pixels[at] = uint32(alpha)<<24 | uint32(red)<<16 | uint32(green)<<8 | uint32(blue)
			insert(pixels[at])
			at++
		case green < 256+24:
			length := prefixValue(r, green-256)
			dist := planeDistance(width, prefixValue(r, group[4].decode(r)))
			if r.eos() || at < dist || len(pixels)-at < length {
				return nil, errors.New("vp8l: a backward reference outside the image")
			}
			for k := range length {
				pixels[at+k] = pixels[at+k-dist]
				insert(pixels[at+k])
			}
			at += length
		default:
			argb := cache[green-256-24]
			pixels[at] = argb
			insert(argb)
			at++
		}
		if r.eos() {
			return nil, errEOS
		}
	}
	return pixels, nil
}

// prefixValue reads a length or distance from its prefix symbol and extra
// bits (GetCopyDistance).
func prefixValue(r *bitReader, symbol int) int {
	if symbol < 4 {
		return symbol + 1
	}
	extra := (symbol - 2) >> 1
	offset := (2 + symbol&1) << extra
	return offset + int(r.read(extra)) + 1
}

// planeDistance maps a distance code to a distance in pixels: the first
// 120 codes name nearby pixels by their offset in two dimensions.
func planeDistance(width, code int) int {
	if code > len(codeToPlane) {
		return code - len(codeToPlane)
	}
	plane := int(codeToPlane[code-1])
	dist := (plane>>4)*width + 8 - plane&0xf
	return max(dist, 1)
}

var codeToPlane = [120]byte{
	0x18, 0x07, 0x17, 0x19, 0x28, 0x06, 0x27, 0x29, 0x16, 0x1a,
	0x26, 0x2a, 0x38, 0x05, 0x37, 0x39, 0x15, 0x1b, 0x36, 0x3a,
	0x25, 0x2b, 0x48, 0x04, 0x47, 0x49, 0x14, 0x1c, 0x35, 0x3b,
	0x46, 0x4a, 0x24, 0x2c, 0x58, 0x45, 0x4b, 0x34, 0x3c, 0x03,
	0x57, 0x59, 0x13, 0x1d, 0x56, 0x5a, 0x23, 0x2d, 0x44, 0x4c,
	0x55, 0x5b, 0x33, 0x3d, 0x68, 0x02, 0x67, 0x69, 0x12, 0x1e,
	0x66, 0x6a, 0x22, 0x2e, 0x54, 0x5c, 0x43, 0x4d, 0x65, 0x6b,
	0x32, 0x3e, 0x78, 0x01, 0x77, 0x79, 0x53, 0x5d, 0x11, 0x1f,
	0x64, 0x6c, 0x42, 0x4e, 0x76, 0x7a, 0x21, 0x2f, 0x75, 0x7b,
	0x31, 0x3f, 0x63, 0x6d, 0x52, 0x5e, 0x00, 0x74, 0x7c, 0x41,
	0x4f, 0x10, 0x20, 0x62, 0x6e, 0x30, 0x73, 0x7d, 0x51, 0x5f,
	0x40, 0x72, 0x7e, 0x61, 0x6f, 0x50, 0x71, 0x7f, 0x60, 0x70,
}
