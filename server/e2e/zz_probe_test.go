//go:build probe

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/store/local"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestProbe720(t *testing.T) {
	cfg := config.Default()
	proc := app.NewProcessor(cfg)
	st, _ := local.Open(t.TempDir())
	svc, _ := app.NewService(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1, BufferBytes: 1 << 30, PixelBytes: 4 << 30}), nil)
	src, _ := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", "sharp_2569067123_aca715a2ee_o.jpg"))
	for range 10 {
		svc.Transform(context.Background(), src, transform.Request{Variant: variant.Request{Override: variant.Spec{Width: 720, Format: variant.FormatJPEG, AutoQuality: true}}})
	}
}

func TestProbeBig(t *testing.T) {
	cfg := config.Default()
	cfg.ProcessTimeout = 10 * time.Minute
	if sp := os.Getenv("SPEED"); sp != "" {
		cfg.AVIFSpeed = int(sp[0] - '0')
	}
	proc := app.NewProcessor(cfg)
	st, _ := local.Open(t.TempDir())
	svc, _ := app.NewService(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1, BufferBytes: 1 << 30, PixelBytes: 8 << 30}), nil)
	name := os.Getenv("IMG")
	src, _ := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", name))
	w := 0
	if os.Getenv("W") != "" {
		w = 720
	}
	specs := []variant.Spec{{Width: w, Format: variant.FormatAVIF, Quality: 50}, {Width: w, Format: variant.FormatAVIF, AutoQuality: true}}
	if os.Getenv("HUGE") != "" {
		specs = []variant.Spec{{Width: 7000, Height: 7000, Fit: variant.FitFill, Format: variant.FormatAVIF, AutoQuality: true}}
	}
	for _, sp := range specs {
		c0, w0 := cpuNow(), time.Now()
		out, chosen, err := svc.Transform(context.Background(), src, transform.Request{Variant: variant.Request{Override: sp}})
		t.Logf("%s speed %d %-22s q=%-3d %8d B  cpu %6.0f ms  wall %6.0f ms  %v", name, cfg.AVIFSpeed, sp.Canonical(), chosen.Quality, len(out.Data),
			float64(cpuNow()-c0)/1e6, float64(time.Since(w0))/1e6, err)
	}
}

func TestProbe(t *testing.T) {
	cfg := config.Default()
	cfg.ProcessTimeout = 10 * time.Minute
	proc := app.NewProcessor(cfg)
	st, _ := local.Open(t.TempDir())
	svc, err := app.NewService(cfg, st, proc, workpool.New(workpool.Limits{Workers: 1, Queue: 1, BufferBytes: 1 << 30, PixelBytes: 4 << 30}), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sharp_2569067123_aca715a2ee_o.jpg", "bimg_test_exif_full.jpg", "imaginary_medium.jpg"} {
		src, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range []variant.Spec{
			{Width: 720, Format: variant.FormatJPEG, Quality: 80},
			{Width: 720, Format: variant.FormatJPEG, AutoQuality: true},
			{Width: 720, Format: variant.FormatAVIF, AutoQuality: true},
			{Width: 720, Format: variant.FormatWebP, AutoQuality: true},
			{Format: variant.FormatWebP, AutoQuality: true},
			{Format: variant.FormatJPEG, AutoQuality: true},
			{Format: variant.FormatAVIF, Quality: 50},
			{Format: variant.FormatAVIF, AutoQuality: true},
		} {
			c0, w0 := cpuNow(), time.Now()
			out, chosen, err := svc.Transform(context.Background(), src, transform.Request{Variant: variant.Request{Override: sp}})
			t.Logf("%-40s %-22s q=%-3d %8d B  cpu %6.0f ms  wall %6.0f ms  %v", name, sp.Canonical()+"."+sp.Format.String(), chosen.Quality, len(out.Data),
				float64(cpuNow()-c0)/1e6, float64(time.Since(w0))/1e6, err)
		}
	}
}
