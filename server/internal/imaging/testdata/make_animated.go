//go:build ignore

// make_animated writes animated.avif, an AVIF image sequence (brand avis)
// of four 64×48 frames, one flat colour each: red, green, blue, white, at
// 4 frames a second. It needs avifenc (Debian's libavif-bin):
//
//	go run ./server/internal/imaging/testdata/make_animated.go
package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
)

func main() {
	args := []string{"--fps", "4", "-s", "6", "-y", "420", "--min", "10", "--max", "20"}
	for i, c := range []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}} {
		img := image.NewRGBA(image.Rect(0, 0, 64, 48))
		draw.Draw(img, img.Bounds(), &image.Uniform{c}, image.Point{}, draw.Src)
		name := filepath.Join(os.TempDir(), fmt.Sprintf("frame%d.png", i))
		f, err := os.Create(name)
		if err != nil {
			panic(err)
		}
		if err := png.Encode(f, img); err != nil {
			panic(err)
		}
		f.Close()
		args = append(args, name)
	}
	args = append(args, filepath.Join("server", "internal", "imaging", "testdata", "animated.avif"))
	if msg, err := exec.Command("avifenc", args...).CombinedOutput(); err != nil {
		panic(fmt.Sprintf("%v\n%s", err, msg))
	}
}
