//go:build ignore

// make_collection writes collection.avif, two still images in one AVIF
// (two top-level items, as a burst or a set of renditions is stored): the
// primary a 64×48 flat red, the other a 32×24 flat green. It needs heif-enc
// (Debian's libheif-examples):
//
//	go run ./server/internal/imaging/testdata/make_collection.go
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
	args := []string{"-A", "-q", "80"}
	for i, im := range []struct {
		w, h int
		c    color.RGBA
	}{{64, 48, color.RGBA{255, 0, 0, 255}}, {32, 24, color.RGBA{0, 255, 0, 255}}} {
		img := image.NewRGBA(image.Rect(0, 0, im.w, im.h))
		draw.Draw(img, img.Bounds(), &image.Uniform{im.c}, image.Point{}, draw.Src)
		name := filepath.Join(os.TempDir(), fmt.Sprintf("still%d.png", i))
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
	args = append(args, "-o", filepath.Join("server", "internal", "imaging", "testdata", "collection.avif"))
	if msg, err := exec.Command("heif-enc", args...).CombinedOutput(); err != nil {
		panic(fmt.Sprintf("%v\n%s", err, msg))
	}
}
