//go:build ignore

// make_multi writes the fixtures that hold several pictures in one file,
// each picture one flat colour. It needs avifenc (Debian's libavif-bin)
// and heif-enc (Debian's libheif-examples):
//
//	go run ./server/internal/imaging/testdata/make_multi.go
//
// animated.avif is an AVIF image sequence (brand avis) of four 64×48
// frames, red, green, blue, white, at 4 frames a second (its boxes carry
// the time it was made, so a new run changes a few bytes); collection.avif
// holds two still images (two top-level items, as a burst or a set of
// renditions is stored): the primary a 64×48 red, the other a 32×24 green.
package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"os/exec"
	"path/filepath"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

var (
	red   = color.RGBA{255, 0, 0, 255}
	green = color.RGBA{0, 255, 0, 255}
	blue  = color.RGBA{0, 0, 255, 255}
	white = color.RGBA{255, 255, 255, 255}
)

// flat is a w×h image of colour c, written as a PNG for the encoders.
func flat(name string, w, h int, c color.RGBA) string {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{c}, image.Point{}, draw.Src)
	return testimages.TempPNG(name, img)
}

func run(tool string, args ...string) {
	if msg, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		panic(fmt.Sprintf("%s: %v\n%s", tool, err, msg))
	}
}

func main() {
	out := filepath.Join("server", "internal", "imaging", "testdata")
	frames := []string{"--fps", "4", "-s", "6", "-y", "420", "--min", "10", "--max", "20"}
	for i, c := range []color.RGBA{red, green, blue, white} {
		frames = append(frames, flat(fmt.Sprintf("frame%d", i), 64, 48, c))
	}
	run("avifenc", append(frames, filepath.Join(out, "animated.avif"))...)
	run("heif-enc", "-A", "-q", "80", flat("primary", 64, 48, red), flat("other", 32, 24, green),
		"-o", filepath.Join(out, "collection.avif"))
}
