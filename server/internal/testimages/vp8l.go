package testimages

import (
	"encoding/binary"
	"math/bits"
)

// LosslessWebP is a WebP lossless (VP8L) image of width×height, black,
// whose entropy image assigns its 4×4 blocks, in turn, groups 0 to
// groups-1 of prefix codes (at most 65,536, and one a block), each group
// five one-symbol codes. With cacheBits > 0 its groups have a colour cache
// of that many bits; with subtractGreen, it lists that transform. libwebp
// allocates tables for every group before it decodes a pixel.
func LosslessWebP(width, height, groups, cacheBits int, subtractGreen bool) []byte {
	var w bitWriter
	w.write(0x2f, 8)
	w.write(uint32(width-1), 14)
	w.write(uint32(height-1), 14)
	w.write(0, 1) // no alpha
	w.write(0, 3) // version 0
	if subtractGreen {
		w.write(1, 1)
		w.write(2, 2)
	}
	w.write(0, 1) // no more transforms
	if cacheBits > 0 {
		w.write(1, 1)
		w.write(uint32(cacheBits), 4)
	} else {
		w.write(0, 1)
	}
	w.write(1, 1) // meta prefix codes
	w.write(0, 3) // blocks of 4×4
	blocks := ((width + 3) / 4) * ((height + 3) / 4)
	// The entropy image: no colour cache; green and red codes of all 256
	// symbols at 8 bits, so each block's group is the 16 bits written;
	// blue, alpha and distance codes of one symbol.
	w.write(0, 1)
	all256 := func(limited bool) {
		w.write(0, 1)       // a normal code
		w.write(12-4, 4)    // 12 code-length code lengths, in their order:
		for i := range 12 { // the 12th is length 8's, the only one used
			w.write(uint32(i/11), 3)
		}
		if limited { // green's alphabet has 280 symbols: code the first 256
			w.write(1, 1)
			w.write(3, 3)
			w.write(256-2, 8)
		} else {
			w.write(0, 1)
		}
	}
	oneSymbol := func() {
		w.write(1, 1) // simple
		w.write(0, 1) // one symbol
		w.write(0, 1) // of 1 bit
		w.write(0, 1) // symbol 0
	}
	all256(true)
	all256(false)
	oneSymbol()
	oneSymbol()
	oneSymbol()
	for b := range blocks {
		// A complete code of 8-bit lengths reads its first bit as its
		// code's most significant: symbol s is written bit-reversed.
		g := b % groups
		w.write(uint32(bits.Reverse8(uint8(g))), 8)
		w.write(uint32(bits.Reverse8(uint8(g>>8))), 8)
	}
	for range min(groups, blocks) * 5 {
		oneSymbol()
	}
	// Every pixel then reads in no bits.
	data := append(w.bytes(), make([]byte, 16)...)
	chunk := append(binary.LittleEndian.AppendUint32([]byte("VP8L"), uint32(len(data))), data...)
	if len(data)%2 == 1 {
		chunk = append(chunk, 0)
	}
	riff := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(4+len(chunk)))
	return append(append(riff, "WEBP"...), chunk...)
}

// bitWriter packs bits from the least significant of each byte, as VP8L
// reads them.
type bitWriter struct {
	buf   []byte
	acc   uint64
	count uint
}

func (w *bitWriter) write(v uint32, n int) {
	w.acc |= uint64(v&(1<<n-1)) << w.count
	for w.count += uint(n); w.count >= 8; w.count -= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
	}
}

func (w *bitWriter) bytes() []byte {
	if w.count > 0 {
		return append(w.buf, byte(w.acc))
	}
	return w.buf
}
