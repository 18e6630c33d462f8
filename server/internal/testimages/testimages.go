// Package testimages generates the images the tests need, so the suite runs
// on a fresh machine without any image corpus: photo-like JPEGs with a known
// layout, EXIF-rotated JPEGs, PNGs with alpha, and hostile files.
package testimages

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Quadrant colours of Photo: top-left, top-right, bottom-left, bottom-right.
var (
	TopLeft     = color.RGBA{220, 40, 40, 255}
	TopRight    = color.RGBA{40, 200, 60, 255}
	BottomLeft  = color.RGBA{40, 60, 220, 255}
	BottomRight = color.RGBA{240, 240, 240, 255}
)

// PhotoImage draws w×h pixels: four coloured quadrants with smooth shading
// and a little deterministic grain, so encoders behave as on a photo.
func PhotoImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(uint64(w), uint64(h)))
	for y := range h {
		for x := range w {
			var c color.RGBA
			switch {
			case x < w/2 && y < h/2:
				c = TopLeft
			case y < h/2:
				c = TopRight
			case x < w/2:
				c = BottomLeft
			default:
				c = BottomRight
			}
			shade := 0.93 + 0.07*math.Sin(float64(x)/17)*math.Cos(float64(y)/23)
			grain := rng.IntN(9) - 4
			img.SetRGBA(x, y, color.RGBA{clamp(float64(c.R)*shade, grain), clamp(float64(c.G)*shade, grain), clamp(float64(c.B)*shade, grain), 255})
		}
	}
	return img
}

func clamp(v float64, grain int) uint8 {
	return uint8(max(0, min(255, int(v)+grain)))
}

// JPEG encodes PhotoImage(w, h) at quality q.
func JPEG(w, h, q int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, PhotoImage(w, h), &jpeg.Options{Quality: q}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// NoiseJPEG encodes w×h of random noise at quality q. Recompressing it at a
// higher quality makes it larger: the "variant would be bigger" case.
func NoiseJPEG(w, h, q int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// ColourNoisePNG is PhotoImage(w, h) with noise in the green channel
// alone: fine colour detail, which a codec that always subsamples chroma
// (WebP) cannot keep at any quality with its plain RGB to YUV conversion
// (sharp YUV, which PNG sources get, keeps enough of it).
func ColourNoisePNG(w, h int) []byte {
	img := PhotoImage(w, h)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 1; i < len(img.Pix); i += 4 {
		img.Pix[i] = uint8(min(max(int(img.Pix[i])+rng.IntN(161)-80, 0), 255))
	}
	return encodePNG(img)
}

// PNG encodes PhotoImage(w, h) with the right half transparent.
func PNG(w, h int) []byte {
	img := PhotoImage(w, h)
	for y := range h {
		for x := w / 2; x < w; x++ {
			img.SetRGBA(x, y, color.RGBA{})
		}
	}
	return encodePNG(img)
}

// TranslucentPNG is PhotoImage(w, h) with an alpha that varies from pixel
// to pixel (x·y mod 256): detail a format that keeps alpha pays for, and
// JPEG, which flattens it onto white, does not.
func TranslucentPNG(w, h int) []byte {
	img := PhotoImage(w, h)
	for y := range h {
		for x := range w {
			img.Pix[y*img.Stride+4*x+3] = uint8(x * y % 256)
		}
	}
	return encodePNG((*image.NRGBA)(img))
}

// WhiteAlphaNoisePNG is PhotoImage(w, h), opaque on its right half, and
// white at random opacities on its left: on white (as JPEG flattens it)
// that half is plain white, nearly free; a format that keeps alpha pays
// for the noise.
func WhiteAlphaNoisePNG(w, h int) []byte {
	img := PhotoImage(w, h)
	rng := rand.New(rand.NewPCG(5, 6))
	for y := range h {
		for x := range w / 2 {
			copy(img.Pix[y*img.Stride+4*x:], []byte{0xFF, 0xFF, 0xFF, uint8(rng.IntN(256))})
		}
	}
	return encodePNG((*image.NRGBA)(img))
}

// TempPNG writes img as a PNG named name under the temporary directory and
// returns its path: the input of the encoders testdata's generators run.
func TempPNG(name string, img image.Image) string {
	path := filepath.Join(os.TempDir(), name+".png")
	if err := os.WriteFile(path, encodePNG(img), 0o644); err != nil {
		panic(err)
	}
	return path
}

// encodePNG is img as a PNG (the standard library's encoder, which cannot
// fail writing to memory).
func encodePNG(img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// OpaqueRGBAPNG is PhotoImage(w, h) stored as 8-bit RGBA with every pixel
// opaque, as many tools save screenshots (the standard library's encoder
// drops an alpha channel that is all opaque, so this one writes its own).
func OpaqueRGBAPNG(w, h int) []byte {
	img := PhotoImage(w, h)
	var raw bytes.Buffer
	zw := zlib.NewWriter(&raw)
	row := make([]byte, 1+4*w) // a filter byte (0: none), then the pixels
	for y := range h {
		copy(row[1:], img.Pix[y*img.Stride:])
		if _, err := zw.Write(row); err != nil {
			panic(err)
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	writeChunk(&buf, "IHDR", ihdr)
	writeChunk(&buf, "IDAT", raw.Bytes())
	writeChunk(&buf, "IEND", nil)
	return buf.Bytes()
}

// OneBitPNG is a 1-bit paletted PNG of vertical stripes: a few KB on
// disk, w×h pixels decoded.
func OneBitPNG(w, h int) []byte {
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White})
	for y := range h {
		row := img.Pix[y*img.Stride : y*img.Stride+w]
		for x := range row {
			row[x] = uint8((x / 4) % 2)
		}
	}
	return encodePNG(img)
}

// WithOrientation inserts an EXIF APP1 segment carrying orientation o right
// after the JPEG's SOI marker.
func WithOrientation(jpg []byte, o uint16) []byte {
	var tiff bytes.Buffer
	le := binary.LittleEndian
	put := func(v any) { _ = binary.Write(&tiff, le, v) } // a bytes.Buffer never fails
	tiff.WriteString("II")
	put(uint16(42))
	put(uint32(8)) // IFD0 offset
	put(uint16(1)) // one entry
	put(uint16(0x0112))
	put(uint16(3)) // SHORT
	put(uint32(1))
	put(o)
	put(uint16(0))
	put(uint32(0)) // no next IFD

	payload := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	seg = append(seg, payload...)

	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// AnimatedGIF is a GIF animation of frames frames of w×h, each its own
// colours.
func AnimatedGIF(w, h, frames int) []byte {
	g := &gif.GIF{}
	for f := range frames {
		img := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
		for y := range h {
			for x := range w {
				img.Set(x, y, color.RGBA{uint8(x + 40*f), uint8(2 * y), uint8(40 * f), 255})
			}
		}
		g.Image, g.Delay = append(g.Image, img), append(g.Delay, 20)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		panic(err) // paletted frames of one size always encode
	}
	return b.Bytes()
}

// TinyFramesGIF is an animation of the given number of 1×1 frames, alternately
// black and white, on one global palette (~20 bytes a frame).
func TinyFramesGIF(frames int) []byte {
	pal := color.Palette{color.Black, color.White}
	g := &gif.GIF{Config: image.Config{ColorModel: pal, Width: 1, Height: 1}}
	for f := range frames {
		img := image.NewPaletted(image.Rect(0, 0, 1, 1), pal)
		img.Pix[0] = uint8(f % 2)
		g.Image, g.Delay = append(g.Image, img), append(g.Delay, 2)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		panic(err) // paletted frames of the screen's size always encode
	}
	return b.Bytes()
}

// BombPNG is a tiny PNG whose header claims w×h pixels: a decompression bomb
// that must be refused from its header, before any decoding.
func BombPNG(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	writeChunk(&buf, "IHDR", ihdr)
	writeChunk(&buf, "IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	writeChunk(&buf, "IEND", nil)
	return buf.Bytes()
}

func writeChunk(buf *bytes.Buffer, typ string, data []byte) {
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	buf.WriteString(typ)
	buf.Write(data)
	buf.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
}

// Decode decodes a JPEG or PNG with the standard library, for pixel checks
// that do not trust the encoder under test.
func Decode(data []byte) (image.Image, string, error) {
	return image.Decode(bytes.NewReader(data))
}

// DecodeFile decodes a JPEG or PNG file (a reference rendition, a decoded
// encode), failing t when it cannot.
func DecodeFile(t testing.TB, path string) image.Image {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := Decode(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// MeanAbsDiff is the mean absolute difference per channel (0–255) between
// two images of the same size, a crude but encoder-independent similarity.
func MeanAbsDiff(a, b image.Image) float64 {
	r := a.Bounds()
	var sum float64
	var n int
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x-r.Min.X+b.Bounds().Min.X, y-r.Min.Y+b.Bounds().Min.Y).RGBA()
			sum += math.Abs(float64(ar>>8)-float64(br>>8)) + math.Abs(float64(ag>>8)-float64(bg>>8)) + math.Abs(float64(ab>>8)-float64(bb>>8))
			n += 3
		}
	}
	return sum / float64(n)
}

// Near reports whether colour c is within tol of want on every channel.
func Near(c color.Color, want color.RGBA, tol int) bool {
	r, g, b, _ := c.RGBA()
	d := func(x uint32, y uint8) bool { return int(x>>8)-int(y) <= tol && int(y)-int(x>>8) <= tol }
	return d(r, want.R) && d(g, want.G) && d(b, want.B)
}

// ProgressiveJPEG writes a valid progressive JPEG of w×h mid-grey pixels
// (grey, or YCbCr 4:4:4 when components is 3) in few bytes: every
// coefficient is zero, sent as end-of-band runs. Its data comes in a DC
// scan per component and then, per component, one scan of all 63 AC
// coefficients (2 scans per component), or, with manyScans, the most
// scans the standard allows: each AC coefficient first at bit 13, then
// refined once per lower bit (883 per component). A decoder holds every
// coefficient of the image while the scans arrive and walks all of them in
// each scan, so with manyScans a small file is costly to decode
// (libjpeg-turbo's "LJT-01-003").
func ProgressiveJPEG(w, h, components int, manyScans bool) []byte {
	var b bytes.Buffer
	seg := func(marker byte, payload ...byte) {
		b.Write([]byte{0xFF, marker})
		_ = binary.Write(&b, binary.BigEndian, uint16(len(payload)+2))
		b.Write(payload)
	}
	b.Write([]byte{0xFF, 0xD8})
	seg(0xDB, append([]byte{0x00}, bytes.Repeat([]byte{1}, 64)...)...)
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(components)}
	for c := range components {
		sof = append(sof, byte(c+1), 0x11, 0)
	}
	seg(0xC2, sof...)
	// DC: one code, "0", for a difference of zero. AC: 4-bit codes for the
	// end-of-band runs EOB0–EOB14 (symbols r<<4).
	var dc, ac [16]byte // codes per length, 1–16 bits
	dc[0], ac[3] = 1, 15
	dht := append(append([]byte{0x00}, dc[:]...), 0x00)
	dht = append(append(dht, 0x10), ac[:]...)
	for r := range 15 {
		dht = append(dht, byte(r<<4))
	}
	seg(0xC4, dht...)
	blocks := ((w + 7) / 8) * ((h + 7) / 8)
	for c := range components {
		id := byte(c + 1)
		seg(0xDA, 1, id, 0x00, 0, 0, 0)
		b.Write(make([]byte, blocks/8))
		if blocks%8 != 0 {
			b.WriteByte(0xFF >> (blocks % 8)) // the last blocks, then 1s
		}
		if !manyScans {
			seg(0xDA, 1, id, 0x00, 1, 63, 0)
			writeEOBRuns(&b, blocks)
			continue
		}
		for k := byte(1); k <= 63; k++ {
			for al := 13; al >= 0; al-- {
				ah := byte(0)
				if al < 13 {
					ah = byte(al + 1)
				}
				seg(0xDA, 1, id, 0x00, k, k, ah<<4|byte(al))
				writeEOBRuns(&b, blocks)
			}
		}
	}
	b.Write([]byte{0xFF, 0xD9})
	return b.Bytes()
}

// writeEOBRuns codes n blocks as end-of-band runs of at most 32,767 (the
// AC table of ProgressiveJPEG: EOBr is the 4-bit code r, then r bits).
func writeEOBRuns(b *bytes.Buffer, n int) {
	var acc uint64
	var bits uint
	put := func(v uint64, n uint) {
		acc, bits = acc<<n|v, bits+n
		for bits >= 8 {
			by := byte(acc >> (bits - 8))
			b.WriteByte(by)
			if by == 0xFF {
				b.WriteByte(0x00)
			}
			bits -= 8
		}
	}
	for n > 0 {
		run := min(n, 1<<15-1)
		r := uint(0)
		for 1<<(r+1) <= run {
			r++
		}
		put(uint64(r), 4)
		put(uint64(run-1<<r), r)
		n -= run
	}
	if bits > 0 {
		put(1<<(8-bits)-1, 8-bits)
	}
}
