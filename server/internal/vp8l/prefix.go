package vp8l

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// bitReader reads a stream's bits from the least significant of each byte,
// as VP8L packs them. Past the end it reads zeros and says so (eos), as
// libwebp's reader does.
type bitReader struct {
	data []byte
	pos  uint64 // in bits
}

// read reads n bits, n ≤ 24.
func (r *bitReader) read(n int) uint32 {
	v := r.peek(n)
	r.pos += uint64(n)
	return v
}

// peek is the next n bits, n ≤ 24, without reading them.
func (r *bitReader) peek(n int) uint32 {
	at := r.pos >> 3
	var window uint64
	if at+8 <= uint64(len(r.data)) {
		window = binary.LittleEndian.Uint64(r.data[at:])
	} else {
		for i := uint64(0); at+i < uint64(len(r.data)); i++ {
			window |= uint64(r.data[at+i]) << (8 * i)
		}
	}
	return uint32(window>>(r.pos&7)) & (1<<n - 1)
}

func (r *bitReader) eos() bool { return r.pos > uint64(len(r.data))*8 }

// maxCodeLength is the longest prefix code VP8L allows.
const maxCodeLength = 15

// prefixCode is a canonical prefix code: how many symbols have each
// length, and the symbols in code order; and, for codes of up to
// fastBits bits, each symbol and its length by the next fastBits bits of
// the stream (0: a longer code).
type prefixCode struct {
	counts  [maxCodeLength + 1]int
	symbols []int
	fast    [1 << fastBits]uint32 // symbol<<4 | length
}

const fastBits = 8

var errBadCode = errors.New("vp8l: a prefix code that is not complete")

// newPrefixCode builds the code of these lengths, accepting what libwebp's
// table builder does: one symbol (read in no bits), or a complete code.
func newPrefixCode(lengths []int) (prefixCode, error) {
	var c prefixCode
	for _, l := range lengths {
		c.counts[l]++
	}
	c.counts[0] = 0
	for l := 1; l <= maxCodeLength; l++ {
		for s, sl := range lengths {
			if sl == l {
				c.symbols = append(c.symbols, s)
			}
		}
	}
	switch {
	case len(c.symbols) == 0:
		return c, errBadCode
	case len(c.symbols) == 1:
		return c, nil
	}
	open := 1
	for l := 1; l <= maxCodeLength; l++ {
		open = open<<1 - c.counts[l]
		if open < 0 {
			return c, errBadCode
		}
	}
	if open != 0 {
		return c, errBadCode
	}
	// A code's first bit is the first read: the table is indexed by the
	// codes bit-reversed, every value of the bits after them alike.
	code, next := 0, 0
	for l := 1; l <= fastBits; l++ {
		for range c.counts[l] {
			reversed := int(bits.Reverse16(uint16(code))) >> (16 - l)
			for fill := 0; fill < 1<<fastBits; fill += 1 << l {
				c.fast[reversed|fill] = uint32(c.symbols[next])<<4 | uint32(l)
			}
			code++
			next++
		}
		code <<= 1
	}
	return c, nil
}

// decode reads one symbol: a code's bits come first bit first, most
// significant first, as in deflate.
func (c *prefixCode) decode(r *bitReader) int {
	if len(c.symbols) == 1 {
		return c.symbols[0]
	}
	if e := c.fast[r.peek(fastBits)]; e&0xf != 0 {
		r.pos += uint64(e & 0xf)
		return int(e >> 4)
	}
	code, first, index := 0, 0, 0
	for l := 1; l <= maxCodeLength; l++ {
		code |= int(r.read(1))
		count := c.counts[l]
		if code-first < count {
			return c.symbols[index+code-first]
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return c.symbols[0] // unreachable for a complete code
}

// codeLengthOrder is the order in which a normal code's code-length code
// lengths are stored.
var codeLengthOrder = [19]int{17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// readPrefixCode reads one prefix code of an alphabet (ReadHuffmanCode): a
// simple code of one or two symbols, or code lengths coded with a code of
// their own, with runs.
func readPrefixCode(r *bitReader, alphabet int) (prefixCode, error) {
	lengths := make([]int, alphabet)
	if r.read(1) == 1 { // simple: one or two symbols of 1 or 8 bits
		two := r.read(1) == 1
		symbols := []int{int(r.read(1 + 7*int(r.read(1))))}
		if two {
			symbols = append(symbols, int(r.read(8)))
		}
		for _, s := range symbols {
			if s < alphabet { // libwebp reads one past the alphabet as absent
				lengths[s] = 1
			}
		}
	} else if err := readCodeLengths(r, lengths); err != nil {
		return prefixCode{}, err
	}
	if r.eos() {
		return prefixCode{}, errEOS
	}
	return newPrefixCode(lengths)
}

// readCodeLengths reads a normal code's lengths (ReadHuffmanCodeLengths).
func readCodeLengths(r *bitReader, lengths []int) error {
	var lengthLengths [19]int
	for i := range int(r.read(4)) + 4 {
		lengthLengths[codeLengthOrder[i]] = int(r.read(3))
	}
	lengthCode, err := newPrefixCode(lengthLengths[:])
	if err != nil {
		return err
	}
	limit := len(lengths)
	if r.read(1) == 1 {
		bits := 2 + 2*int(r.read(3))
		if limit = 2 + int(r.read(bits)); limit > len(lengths) {
			return errors.New("vp8l: more code lengths than symbols")
		}
	}
	previous := 8
	for s := 0; s < len(lengths) && limit > 0; limit-- {
		l := lengthCode.decode(r)
		if l < 16 {
			lengths[s] = l
			s++
			if l != 0 {
				previous = l
			}
			continue
		}
		extra, offset, repeated := [3]int{2, 3, 7}[l-16], [3]int{3, 3, 11}[l-16], 0
		if l == 16 {
			repeated = previous
		}
		run := int(r.read(extra)) + offset
		if s+run > len(lengths) {
			return errors.New("vp8l: a run of code lengths past the alphabet")
		}
		for range run {
			lengths[s] = repeated
			s++
		}
	}
	return nil
}
