package imaging

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// The shape sweep runs every case through the real libvips pipeline in a
// child process: libvips reports some internal errors by aborting, and an
// abort must fail this test, naming its case, instead of killing the test
// binary. The child prints a line before and after each case; the parent
// restarts it after a crash, from the case that follows.
const sweepChildEnv = "IMGEDGE_SHAPE_SWEEP_FROM"

// shapeCase is one input shape, format and output spec.
type shapeCase struct {
	w, h   int
	input  string // one of sweepInputs
	label  string // preset name or fit
	spec   variant.Spec
	format variant.Format
}

func (c shapeCase) String() string {
	return fmt.Sprintf("%d×%d %s, %s → %s %s", c.w, c.h, c.input, c.label, c.format, describe(c.spec))
}

func describe(s variant.Spec) string {
	return fmt.Sprintf("(w %d, h %d, %s)", s.Width, s.Height, s.Fit)
}

// sweepInputs are the input kinds shapeImage makes: greyscale JPEG, RGBA
// PNG, 16-bit PNG, 1-bit PNG, WebP, AVIF, GIF, colour JPEG (chroma
// subsampled 4:2:0), colour JPEG stored on its side (EXIF orientation 6),
// and progressive JPEGs (whose decoder holds every coefficient) of three
// components and of four (CMYK, converted through a profile). The fuzz
// targets' seeds index it: new kinds go at the end.
var sweepInputs = []string{"jpeg", "png", "png16", "gray1", "webp", "avif", "gif", "animated-gif", "colour-jpeg", "rotated-jpeg", "progressive-jpeg", "cmyk-jpeg"}

// sweepShapes are thin and tiny shapes, the reported crashers first, up to
// a million pixels (IMGEDGE_SHAPE_SWEEP_FULL=1 adds sides up to the
// pixel limit).
func sweepShapes() [][2]int {
	shapes := [][2]int{{2400, 3}, {20000, 1}, {4000, 6}, {3, 2400}}
	sides := []int{1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 64, 301, 2400, 16383, 16385, 65500}
	if os.Getenv("IMGEDGE_SHAPE_SWEEP_FULL") != "" {
		sides = append(sides, 1_000_000, 50_000_000)
	}
	for _, thin := range []int{1, 2, 3, 6, 9} {
		for _, n := range sides {
			shapes = append(shapes, [2]int{thin, n}, [2]int{n, thin})
		}
	}
	shapes = append(shapes, [2]int{1, 1}, [2]int{17, 13}, [2]int{1000, 1000})
	var out [][2]int
	for _, s := range shapes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// scoredShapes are the shapes an auto-quality search scores at their
// edges, swept with the auto-quality specs only: the smallest side scored
// (113) and one below it, a tile's size, strips whose tiles line up along
// one axis, past the formats' sides, and an image larger than the tiles'
// mosaic, which the trials then encode instead.
func scoredShapes() [][2]int {
	return [][2]int{{113, 113}, {112, 4000}, {113, 4000}, {4000, 113}, {257, 256}, {16385, 113}, {113, 16385}, {1500, 1000}}
}

// inputFits says whether a format can store a w×h image at all.
func inputFits(input string, w, h int) bool {
	switch input {
	case "jpeg", "colour-jpeg", "rotated-jpeg", "progressive-jpeg", "cmyk-jpeg":
		return w <= 65_500 && h <= 65_500
	case "webp":
		return w <= 16_383 && h <= 16_383
	case "avif":
		return w <= 16_384 && h <= 16_384 && w*h <= 1<<20
	case "gif", "animated-gif":
		return w <= 65_535 && h <= 65_535
	}
	return w*h <= 50_000_000
}

// sweepSpecs are every built-in preset plus each fit on a thin box, in
// each output format.
func sweepSpecs(t testing.TB) []shapeCase {
	cfg := config.Default()
	presets := cfg.PresetSpecs()
	var specs []shapeCase
	for _, name := range slices.Sorted(maps.Keys(presets)) {
		specs = append(specs, shapeCase{label: "preset " + name, spec: presets[name]})
	}
	for _, fit := range []variant.Fit{variant.FitInside, variant.FitCover, variant.FitFill} {
		specs = append(specs,
			shapeCase{label: fit.String(), spec: variant.Spec{Width: 300, Height: 300, Fit: fit}},
			shapeCase{label: fit.String(), spec: variant.Spec{Width: 320, Height: 1, Fit: fit}},
		)
	}
	specs = append(specs,
		shapeCase{label: "width", spec: variant.Spec{Width: 300}},
		shapeCase{label: "height", spec: variant.Spec{Height: 300}},
		// Auto quality: the service's search, its trials and their scores.
		shapeCase{label: "auto cover", spec: variant.Spec{Width: 300, Height: 300, Fit: variant.FitCover, AutoQuality: true}},
		shapeCase{label: "auto", spec: variant.Spec{AutoQuality: true}},
	)
	return specs
}

// sweepCases crosses shapes, input formats, specs and output formats. The
// reported crashers get the whole product; every other shape and input get
// a rotating sixteenth of the spec × format pairs (an eighth of the scored
// shapes' auto-quality pairs), so each pair still meets many shapes, and
// IMGEDGE_SHAPE_SWEEP_FULL=1 (make fuzz) runs everything.
func sweepCases(t testing.TB) []shapeCase {
	full := os.Getenv("IMGEDGE_SHAPE_SWEEP_FULL") != ""
	specs := sweepSpecs(t)
	formats := []variant.Format{variant.FormatJPEG, variant.FormatWebP, variant.FormatAVIF, variant.FormatPNG}
	autoSpecs := slices.DeleteFunc(slices.Clone(specs), func(c shapeCase) bool { return !c.spec.AutoQuality })
	shapes := sweepShapes()
	var cases []shapeCase
	for si, s := range append(shapes, scoredShapes()...) {
		specs, stride := specs, sweepStride
		if si >= len(shapes) {
			specs, stride = autoSpecs, scoredStride
		}
		for ii, input := range sweepInputs {
			if !inputFits(input, s[0], s[1]) {
				continue
			}
			for pi, sp := range specs {
				for fi, f := range formats {
					pair := pi*len(formats) + fi
					if !full && si >= reportedShapes && (pair+3*si+5*ii)%stride != 0 {
						continue
					}
					c := sp
					c.w, c.h, c.input, c.format = s[0], s[1], input, f
					cases = append(cases, c)
				}
			}
		}
	}
	return cases
}

// reportedShapes is the number of shapes at the head of sweepShapes that
// crashed the service once; sweepStride thins out the rest, and
// scoredStride the scored shapes' fewer pairs.
const (
	reportedShapes = 4
	sweepStride    = 16
	scoredStride   = 8
)

func TestExtremeShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("the shape sweep takes a few seconds")
	}
	cases := sweepCases(t)
	if from := os.Getenv(sweepChildEnv); from != "" {
		runSweepChild(t, cases, from)
		return
	}
	var failures []string
	done := 0
	for next := 0; next < len(cases); {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExtremeShapes$", "-test.count=1")
		cmd.Env = append(os.Environ(), sweepChildEnv+"="+strconv.Itoa(next))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started := -1
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			verb, rest, _ := strings.Cut(sc.Text(), " ")
			idx, msg, _ := strings.Cut(rest, " ")
			i, err := strconv.Atoi(idx)
			if err != nil {
				continue
			}
			switch verb {
			case "start":
				started = i
			case "ok":
				started, next = -1, i+1
				done++
			case "fail":
				started, next = -1, i+1
				done++
				failures = append(failures, fmt.Sprintf("%v: %s", cases[i], msg))
			}
		}
		werr := cmd.Wait()
		if started >= 0 {
			failures = append(failures, fmt.Sprintf("%v: the process died (%v): %s", cases[started], werr, why(stderr.String())))
			next = started + 1
			continue
		}
		if werr != nil && next < len(cases) {
			t.Fatalf("the sweep's child failed outside any case: %v\n%s", werr, tail(stderr.String(), 2000))
		}
	}
	t.Logf("%d cases through libvips %s, %d failed", done, Version(), len(failures))
	for _, f := range failures {
		t.Error(f)
	}
}

// why picks the lines of a dead child's stderr that say what killed it.
func why(stderr string) string {
	var lines []string
	for l := range strings.Lines(stderr) {
		if strings.Contains(l, "assert") || strings.Contains(l, "SIG") || strings.Contains(l, "VIPS") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) == 0 {
		return tail(stderr, 300)
	}
	return strings.Join(lines[:min(len(lines), 3)], " | ")
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// runSweepChild runs the cases from index from on, printing each outcome.
func runSweepChild(t *testing.T, cases []shapeCase, from string) {
	start, err := strconv.Atoi(from)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	inputs := map[string][]byte{}
	for i := start; i < len(cases); i++ {
		c := cases[i]
		fmt.Fprintf(out, "start %d\n", i)
		out.Flush()
		key := fmt.Sprintf("%s %d %d", c.input, c.w, c.h)
		data, ok := inputs[key]
		if !ok {
			data = shapeImage(c.input, c.w, c.h)
			clear(inputs) // cases are grouped by input: keep one
			inputs[key] = data
		}
		if err := checkShape(c, data); err != nil {
			fmt.Fprintf(out, "fail %d %s\n", i, strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Fprintf(out, "ok %d\n", i)
		}
	}
	out.Flush()
}

// sweepProc encodes as the service does by default — mozjpeg's settings
// (chroma 4:2:0 below q95, fitted luma), progressive JPEG with optimised
// scans, sharp YUV for WebPs of graphics — so that the sweep runs the real
// pipeline.
var sweepProc = func() *Processor {
	jpeg := MozJPEG
	jpeg.Progressive = true
	return New(Config{AVIFSpeed: 8, JPEG: jpeg, WebPSharpYUV: true})
}()

// sweepService runs the auto-quality cases through the service's own
// search (Prepare, trials on the tiles' mosaic or the whole image, their
// scores, the final encode) on sweepProc, with limits past every shape of
// the sweep.
var sweepService = func() *transform.Service {
	const huge = 1 << 30
	svc, err := transform.New(transform.Config{
		Prefix:         "variants/",
		Presets:        map[string]variant.Spec{"sweep": {}},
		DefaultPreset:  "sweep",
		Defaults:       variant.Defaults{Negotiation: variant.Negotiation{Fallback: variant.FormatJPEG}},
		Limits:         transform.Limits{MaxSourceBytes: huge, MaxSourcePixels: huge, MaxWidth: huge, MaxHeight: huge},
		ProcessTimeout: time.Minute,
	}, nil, sweepProc, workpool.New(workpool.Limits{Workers: 1, Queue: 1, BufferBytes: huge, PixelBytes: 16 * huge}))
	if err != nil {
		panic(err)
	}
	return svc
}()

// checkShape runs one case: a valid image gets a variant of the expected
// size, or a clear refusal when the output format cannot hold it.
func checkShape(c shapeCase, data []byte) error {
	proc := sweepProc
	info, err := proc.Probe(data)
	if err != nil {
		return fmt.Errorf("Probe: %w", err)
	}
	if info.Width != c.w || info.Height != c.h {
		return fmt.Errorf("Probe says %d×%d", info.Width, info.Height)
	}
	spec := c.spec
	spec.Format = c.format
	spec.Quality = map[variant.Format]int{variant.FormatJPEG: 80, variant.FormatWebP: 75, variant.FormatAVIF: 50}[c.format]
	upW, upH := c.w, c.h
	if info.Orientation >= 5 { // stored on its side: the variant is upright
		upW, upH = upH, upW
	}
	want := [2]int{}
	want[0], want[1] = targetSize(spec, upW, upH)
	var out transform.Output
	var chosen variant.Spec
	if spec.AutoQuality {
		out, chosen, err = sweepService.Transform(context.Background(), data, transform.Request{Variant: variant.Request{Override: spec}})
	} else {
		out, err = proc.Process(data, transform.Operation{Spec: spec, Source: info})
	}
	if err != nil {
		if errors.Is(err, transform.ErrTooLargeForFormat) && strings.Contains(err.Error(), "stores at most") &&
			(want[0] > maxSide[c.format] || want[1] > maxSide[c.format]) {
			return nil // refused, with a reason a user can act on
		}
		return fmt.Errorf("Process (want %d×%d): %w", want[0], want[1], err)
	}
	if out.Width != want[0] || out.Height != want[1] || out.Width < 1 || out.Height < 1 {
		return fmt.Errorf("reported %d×%d, want %d×%d", out.Width, out.Height, want[0], want[1])
	}
	got, err := proc.Probe(out.Data)
	if err != nil {
		return fmt.Errorf("the output does not probe: %w", err)
	}
	if got.Format != c.format.String() || got.Width != want[0] || got.Height != want[1] {
		return fmt.Errorf("the output is %s %d×%d, want %s %d×%d", got.Format, got.Width, got.Height, c.format, want[0], want[1])
	}
	if spec.AutoQuality && !metTarget(out, chosen) {
		return fmt.Errorf("auto quality answered q%d scoring %.1f: under the target %v, yet not the top of the range nor lossless",
			chosen.Quality, out.Score, transform.DefaultAutoQuality.Targets[c.format])
	}
	return nil
}

// metTarget says whether an auto-quality answer keeps the search's
// promise: a score at the target, or the top of the range where none
// reaches it, or a lossless PNG; an image too small to score (no score)
// has the format's default quality.
func metTarget(out transform.Output, chosen variant.Spec) bool {
	a := transform.DefaultAutoQuality
	return out.Score == 0 || out.Score >= a.Targets[chosen.Format] ||
		chosen.Quality == a.MaxQuality || chosen.Format == variant.FormatPNG && chosen.Quality == 0
}

// shapeImage makes a w×h image in the given input format: a gradient, so
// that every encoder has some detail to keep.
func shapeImage(input string, w, h int) []byte {
	var buf bytes.Buffer
	var err error
	switch input {
	case "jpeg":
		err = jpeg.Encode(&buf, gradientGray(w, h), &jpeg.Options{Quality: 85})
	case "colour-jpeg":
		err = jpeg.Encode(&buf, gradientNRGBA(w, h), &jpeg.Options{Quality: 85})
	case "rotated-jpeg":
		return testimages.WithOrientation(shapeImage("colour-jpeg", w, h), 6)
	case "progressive-jpeg":
		return testimages.ProgressiveJPEG(w, h, 3, false)
	case "cmyk-jpeg":
		return testimages.ProgressiveJPEG(w, h, 4, false)
	case "png":
		err = png.Encode(&buf, gradientNRGBA(w, h))
	case "png16":
		img := image.NewNRGBA64(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				img.SetNRGBA64(x, y, color.NRGBA64{uint16(x * 257), uint16(y * 257), 0x8000, uint16(0xffff - (x+y)%2*0x4000)})
			}
		}
		err = png.Encode(&buf, img)
	case "gray1":
		return onebitPNG(w, h)
	case "gif":
		img := image.NewPaletted(image.Rect(0, 0, w, h), []color.Color{color.Black, color.White, color.Transparent})
		for i := range img.Pix {
			img.Pix[i] = uint8(i % 3)
		}
		err = gif.Encode(&buf, img, nil)
	case "animated-gif": // three frames, each its own phase of the pattern
		anim := &gif.GIF{}
		for f := range 3 {
			img := image.NewPaletted(image.Rect(0, 0, w, h), []color.Color{color.Black, color.White, color.Transparent})
			for i := range img.Pix {
				img.Pix[i] = uint8((i + f) % 3)
			}
			anim.Image, anim.Delay = append(anim.Image, img), append(anim.Delay, 10)
		}
		err = gif.EncodeAll(&buf, anim)
	case "webp", "avif":
		f := variant.FormatWebP
		if input == "avif" {
			f = variant.FormatAVIF
		}
		src := shapeImage("png", w, h)
		info, perr := proc.Probe(src)
		if perr != nil {
			panic(perr)
		}
		out, perr := proc.Process(src, transform.Operation{Spec: variant.Spec{Format: f, Quality: 90}, Source: info})
		if perr != nil {
			panic(fmt.Sprintf("making a %d×%d %s input: %v", w, h, input, perr))
		}
		return out.Data
	}
	if err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func gradientGray(w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Pix[y*img.Stride+x] = uint8(x*7 + y*13)
		}
	}
	return img
}

func gradientNRGBA(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), uint8(255 - (x+y)%128)})
		}
	}
	return img
}

// onebitPNG is a 1-bit greyscale PNG (stripes): tiny on disk, large decoded.
func onebitPNG(w, h int) []byte {
	img := image.NewPaletted(image.Rect(0, 0, w, h), []color.Color{color.Black, color.White})
	for y := range h {
		for x := range w {
			img.Pix[y*img.Stride+x] = uint8((x / 4) % 2)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// A source within the pixel limit can need a larger shrink than libvips'
// reducers take (1,000,000): 1×2,000,000 to one pixel. It is resized in two
// steps, not refused.
func TestShrinkPastTheReducersLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes a 2-megapixel column")
	}
	for _, input := range []string{"png", "gray1"} {
		src := shapeImage(input, 1, 2_000_000)
		for _, spec := range []variant.Spec{
			{Width: 320, Height: 1, Fit: variant.FitInside}, // to 1×1
			{Width: 320, Height: 1, Fit: variant.FitFill},   // to 320×1
			{Height: 2}, // to 1×2
		} {
			if err := checkShape(shapeCase{w: 1, h: 2_000_000, input: input, format: variant.FormatPNG, spec: spec}, src); err != nil {
				t.Errorf("%s %+v: %v", input, spec, err)
			}
		}
	}
}
