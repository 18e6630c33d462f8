package imaging

/*
#include <vips/vips.h>
#include "pipeline.h"
*/
import "C"

import (
	"fmt"
	"image"
	"math"
	"time"
	"unsafe"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/quality"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Scoring looks at tiles of scoreTile×scoreTile pixels (the smallest size
// whose six SSIMULACRA2 scales are all 8 px or more), at most scoreTiles of them spread
// over the image, so its cost is bounded whatever the image's size while
// every region has a say; the worst tile decides. Tiles start on multiples
// of tileAlign, a multiple of every codec's block (JPEG's 8 and 16, WebP's
// 16, AV1's 64-pixel superblocks), so a tile encoded alone in the search's
// mosaic is cut into the same blocks as in the whole image.
const (
	scoreTile  = 256
	scoreTiles = 8
	tileAlign  = 64
)

// Prepare decodes, orients and resizes once into 8-bit sRGB pixels (alpha
// kept), and prepares SSIMULACRA2 references of what a viewer sees (alpha
// flattened onto white) for scoring.
func (p *Processor) Prepare(data []byte, op transform.Operation) (transform.Prepared, error) {
	pl, err := p.plan(op.Spec, op.Source, C.IMGEDGE_RAW)
	if err != nil {
		return nil, err
	}
	mid, bands, err := execute(data, &pl.opts)
	if err != nil {
		return nil, err
	}
	pr := &prepared{p: p, pixels: mid.Data, width: mid.Width, height: mid.Height, bands: bands, source: op.Source.Format,
		animation: op.Source.AnimatesAs(variant.FormatWebP)}
	pr.translucent = translucent(pr.pixels, bands)
	if quality.Scales(pr.width, pr.height) < 6 {
		// Under 113 px on a side, SSIMULACRA2 has fewer than six scales
		// and its scores stop tracking quality (quality.Scales): too small
		// to score, Score says so.
		return pr, nil
	}
	rects := scoreTilesOf(pr.width, pr.height)
	tiles, err := pr.viewed(mid.Data, pr.width, pr.height, pr.bands, rects)
	if err != nil {
		return nil, err
	}
	for i, r := range rects {
		ref, err := quality.NewSSIMULACRA2Reference(tiles[i])
		if err != nil {
			return nil, err
		}
		pr.tiles = append(pr.tiles, scoredTile{rect: r, ref: ref})
	}
	if len(rects) > 1 && mosaicPixels(len(rects)) < pr.width*pr.height {
		pr.buildMosaic()
	}
	return pr, nil
}

// buildMosaic copies the scored tiles side by side into one small image,
// mosaicCols to a row, each with mosaicMargin pixels of its surroundings
// (edge pixels repeated where the image ends), so that codecs see each
// tile in context: the search encodes and scores it instead of the whole
// image, so a quality step costs the same for a 12 MP output as for a 1 MP
// one.
func (pr *prepared) buildMosaic() {
	cols, rows := mosaicGrid(len(pr.tiles))
	pr.mw, pr.mh = cols*mosaicCell, rows*mosaicCell
	pr.mosaic = make([]byte, pr.mw*pr.mh*pr.bands)
	for i := range cols * rows {
		t := &pr.tiles[i%len(pr.tiles)] // spare cells repeat the first tiles, never scored
		x0, y0 := i%cols*mosaicCell, i/cols*mosaicCell
		if i < len(pr.tiles) {
			t.inMosaic = image.Rect(0, 0, scoreTile, scoreTile).Add(image.Pt(x0+mosaicMargin, y0+mosaicMargin))
		}
		for y := range mosaicCell {
			sy := min(max(t.rect.Min.Y-mosaicMargin+y, 0), pr.height-1)
			dst := pr.mosaic[((y0+y)*pr.mw+x0)*pr.bands:][:mosaicCell*pr.bands]
			row := pr.pixels[sy*pr.width*pr.bands:][:pr.width*pr.bands]
			for x := range mosaicCell {
				sx := min(max(t.rect.Min.X-mosaicMargin+x, 0), pr.width-1)
				copy(dst[x*pr.bands:(x+1)*pr.bands], row[sx*pr.bands:])
			}
		}
	}
}

// The mosaic's layout: mosaicCols cells to a row, each a tile with
// mosaicMargin pixels of context, a multiple of tileAlign so the tile keeps
// its block alignment.
const (
	mosaicCols   = 4
	mosaicMargin = tileAlign
	mosaicCell   = scoreTile + 2*mosaicMargin
)

// mosaicGrid is the columns and rows of the mosaic of n tiles.
func mosaicGrid(n int) (cols, rows int) {
	cols = min(n, mosaicCols)
	return cols, (n + cols - 1) / cols
}

// mosaicPixels is the size of the mosaic of n tiles: below the image's
// own, a trial on it is cheaper than on the whole image.
func mosaicPixels(n int) int {
	cols, rows := mosaicGrid(n)
	return cols * rows * mosaicCell * mosaicCell
}

// scoreTilesOf places the tiles scored for a w×h image: the whole image
// when it is small, otherwise up to scoreTiles tiles, one centred in each
// cell of a grid over the image.
func scoreTilesOf(w, h int) []image.Rectangle {
	if w*h <= scoreTiles*scoreTile*scoreTile || w < scoreTile || h < scoreTile {
		return []image.Rectangle{image.Rect(0, 0, w, h)}
	}
	cols := max(1, min(scoreTiles, int(math.Round(math.Sqrt(float64(scoreTiles)*float64(w)/float64(h))))))
	rows := max(1, min(scoreTiles/cols, h/scoreTile))
	cols = min(cols, w/scoreTile)
	var tiles []image.Rectangle
	for r := range rows {
		for c := range cols {
			cx, cy := (2*c+1)*w/(2*cols), (2*r+1)*h/(2*rows)
			x0, y0 := min(max(0, cx-scoreTile/2), w-scoreTile), min(max(0, cy-scoreTile/2), h-scoreTile)
			x0, y0 = x0/tileAlign*tileAlign, y0/tileAlign*tileAlign
			tiles = append(tiles, image.Rect(x0, y0, x0+scoreTile, y0+scoreTile))
		}
	}
	return tiles
}

type prepared struct {
	p                    *Processor
	pixels               []byte // 8-bit sRGB, alpha kept
	width, height, bands int
	source               string // the original's format ("png", "jpeg", ...)
	animation            bool   // the original's WebP is an animation (searched on its first frame)
	tiles                []scoredTile
	// mosaic holds the scored tiles side by side (mw×mh, same bands) when
	// that is smaller than the image; nil otherwise.
	mosaic []byte
	mw, mh int
	// avif is the encoding of every AVIF encode, trial or final, once the
	// first trial has settled it (avifSettled).
	avif        avifEncoding
	avifSettled bool
	translucent bool // some pixel's alpha is below opaque
}

// scoredTile is one region of the reference, ready for scoring.
type scoredTile struct {
	rect     image.Rectangle // in the image
	inMosaic image.Rectangle // in the mosaic, when there is one
	ref      *quality.SSIMULACRA2Reference
}

// Encode encodes the prepared pixels.
func (pr *prepared) Encode(spec variant.Spec) (transform.Output, error) {
	data, err := pr.encode(spec, pr.pixels, pr.width, pr.height)
	return transform.Output{Data: data, Width: pr.width, Height: pr.height}, err
}

// encode encodes w×h raw pixels of the prepared bands.
func (pr *prepared) encode(spec variant.Spec, pixels []byte, w, h int) ([]byte, error) {
	pl, err := pr.p.plan(spec, transform.ImageInfo{Width: w, Height: h}, formatCode(spec.Format))
	if err != nil {
		return nil, err
	}
	// The mosaic is encoded as the whole image is, as it stands for it.
	avif := pr.wholeAVIF()
	pl.opts.effort, pl.opts.avif_bitdepth = C.int(9-avif.speed), C.int(avif.bitDepth)
	pl.opts.webp_effort = C.int(pr.p.webpEffort(pr.width * pr.height))
	pl.opts.fit_luma = cbool(spec.Format == variant.FormatJPEG && pr.p.fitLuma(spec, pr.source))
	pl.opts.webp_sharp_yuv = cbool(spec.Format == variant.FormatWebP && pr.p.webpSharpYUV(pr.source, pr.width*pr.height, pr.animation))
	var out unsafe.Pointer
	var outLen C.size_t
	if C.imgedge_encode_raw(unsafe.Pointer(&pixels[0]), C.size_t(len(pixels)), C.int(w), C.int(h), C.int(pr.bands), &pl.opts, &out, &outLen) != 0 {
		return nil, fmt.Errorf("%w: encoding: %s", transform.ErrUnsupportedImage, vipsError())
	}
	defer C.g_free(C.gpointer(out))
	return C.GoBytes(out, C.int(outLen)), nil
}

// Score is the SSIMULACRA2 score of an encoded image against the prepared
// pixels, both as a viewer sees them: the worst of the scored tiles.
func (pr *prepared) Score(encoded []byte) (float64, error) {
	if len(pr.tiles) == 0 {
		return 0, fmt.Errorf("%w: %d×%d", transform.ErrCannotScore, pr.width, pr.height)
	}
	return pr.worst(encoded, pr.width, pr.height, func(t scoredTile) image.Rectangle { return t.rect })
}

// FullChromaFrom is the quality from which an encode in format f keeps
// full chroma by itself, where a search below it with full chroma is
// worth its cost (fullChromaFrom).
func (pr *prepared) FullChromaFrom(f variant.Format) int {
	return pr.p.fullChromaFrom(f, pr.width*pr.height)
}

// Translucent says whether a pixel of the prepared image is below opaque.
func (pr *prepared) Translucent() bool { return pr.translucent }

// Pixels is the prepared image's width × height.
func (pr *prepared) Pixels() int { return pr.width * pr.height }

// translucent says whether any of 8-bit interleaved pixels of the given
// bands (alpha last, where their number is even: grey and alpha, RGBA) is
// below opaque.
func translucent(pixels []byte, bands int) bool {
	if bands%2 != 0 {
		return false
	}
	for i := bands - 1; i < len(pixels); i += bands {
		if pixels[i] != 0xFF {
			return true
		}
	}
	return false
}

// Trial encodes at spec and scores what the search judges: the whole image
// when there is no mosaic (the output is then returned, ready to serve), or
// else the mosaic of the tiles in their context (no output: Encode the
// chosen quality). JPEG cuts the mosaic into the very blocks of the whole
// image (identical scores) and AV1 nearly so (within 0.7 on photos, mostly
// a little harsher: TestMosaicTrialTracksTheWholeImage).
func (pr *prepared) Trial(spec variant.Spec) (transform.Output, float64, error) {
	if len(pr.tiles) == 0 {
		return transform.Output{}, 0, fmt.Errorf("%w: %d×%d", transform.ErrCannotScore, pr.width, pr.height)
	}
	if pr.mosaic == nil || spec.Format == variant.FormatWebP || spec.Format == variant.FormatPNG {
		// WebP picks its quantisers per segment from statistics of the
		// whole picture, so a mosaic is judged on other terms (scores
		// 0.3–3 lower, measured); it is cheap enough to encode whole. A
		// PNG's palette, likewise, is chosen for the whole picture.
		out, err := pr.Encode(spec)
		if err != nil {
			return transform.Output{}, 0, err
		}
		score, err := pr.Score(out.Data)
		return out, score, err
	}
	var data []byte
	var err error
	if spec.Format == variant.FormatAVIF && !pr.avifSettled {
		data, err = pr.settleAVIF(spec)
	} else {
		data, err = pr.encode(spec, pr.mosaic, pr.mw, pr.mh)
	}
	if err != nil {
		return transform.Output{}, 0, err
	}
	score, err := pr.worst(data, pr.mw, pr.mh, func(t scoredTile) image.Rectangle { return t.inMosaic })
	return transform.Output{}, score, err
}

// wholeAVIF is the AV1 encoding for the whole image: the settled one, or
// the configured one (by the output's size unless set).
func (pr *prepared) wholeAVIF() avifEncoding {
	if pr.avifSettled {
		return pr.avif
	}
	return pr.p.avifEncoding(pr.width * pr.height)
}

// settleAVIF encodes the mosaic for an AVIF search's first trial as the
// output's size allows, then settles the encoding of the search and of its
// final encode: avifMeasuredSpeed at 10 bits (up to avif10BitSearchPixels),
// or else at 8, when by the bits that encode took (at the quality the search
// starts from, usually near its answer) the search's trials and the final
// encode fit avifMeasuredBudget (the trial is then encoded again), or else
// the size's. A configured speed is kept as it is.
func (pr *prepared) settleAVIF(spec variant.Spec) ([]byte, error) {
	pr.avif, pr.avifSettled = pr.wholeAVIF(), true
	data, err := pr.encode(spec, pr.mosaic, pr.mw, pr.mh)
	if err != nil || pr.p.cfg.AVIFSpeed != AVIFSpeedBySize || pr.avif == avifRungs[0].enc {
		return data, err
	}
	bitsPerPixel := float64(8*len(data)) / float64(pr.mw*pr.mh)
	megapixels := float64(pr.width*pr.height+searchTrials*pr.mw*pr.mh) / 1e6
	at8 := megapixels * float64(avifSpeed6PerMP(bitsPerPixel))
	for _, c := range []struct {
		enc  avifEncoding
		cost time.Duration
		fits bool
	}{
		{avifEncoding{speed: avifMeasuredSpeed, bitDepth: 10}, time.Duration(at8 * avif10BitCost), pr.p.searchMaySettle10Bits(pr.width * pr.height)},
		{avifEncoding{speed: avifMeasuredSpeed, bitDepth: 8}, time.Duration(at8), true},
	} {
		if !c.fits || c.cost > avifMeasuredBudget {
			continue
		}
		if c.enc == pr.avif {
			return data, nil
		}
		pr.avif = c.enc
		return pr.encode(spec, pr.mosaic, pr.mw, pr.mh)
	}
	return data, nil
}

// worst decodes an encoded w×h image as a viewer sees it and scores the
// region of each tile where at says it lies: the worst tile's score.
func (pr *prepared) worst(encoded []byte, w, h int, at func(scoredTile) image.Rectangle) (float64, error) {
	rects := make([]image.Rectangle, len(pr.tiles))
	for i, t := range pr.tiles {
		rects[i] = at(t)
	}
	cands, err := pr.viewed(encoded, w, h, 0, rects)
	if err != nil {
		return 0, err
	}
	worst := math.Inf(1)
	for i, t := range pr.tiles {
		s, err := t.ref.Score(cands[i])
		if err != nil {
			return 0, err
		}
		worst = min(worst, s)
	}
	return worst, nil
}

// viewed decodes an encoded image (bands 0), or raw pixels of the given
// bands, w×h, to what a viewer sees — 8-bit sRGB, alpha flattened onto
// white — and copies out the given regions only, so scoring a large image
// never holds it twice.
func (pr *prepared) viewed(data []byte, w, h, bands int, rects []image.Rectangle) ([]*image.NRGBA, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: nothing to score", transform.ErrUnsupportedImage)
	}
	var rw, rh C.int
	if bands > 0 {
		rw, rh = C.int(w), C.int(h)
	}
	var out unsafe.Pointer
	var outLen C.size_t
	var ow, oh C.int
	if C.imgedge_viewed(unsafe.Pointer(&data[0]), C.size_t(len(data)), rw, rh, C.int(bands), &out, &outLen, &ow, &oh) != 0 {
		return nil, fmt.Errorf("%w: decoding for scoring: %s", transform.ErrUnsupportedImage, vipsError())
	}
	defer C.g_free(C.gpointer(out))
	if int(ow) != w || int(oh) != h || int(outLen) != 3*w*h {
		return nil, fmt.Errorf("imaging: the encoded image is %d×%d, expected %d×%d", ow, oh, w, h)
	}
	rgb := unsafe.Slice((*byte)(out), int(outLen))
	tiles := make([]*image.NRGBA, len(rects))
	for i, r := range rects {
		img := image.NewNRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
		for y := range r.Dy() {
			src := rgb[3*((r.Min.Y+y)*w+r.Min.X):]
			dst := img.Pix[y*img.Stride:]
			for x := range r.Dx() {
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = src[3*x], src[3*x+1], src[3*x+2], 255
			}
		}
		tiles[i] = img
	}
	return tiles, nil
}
