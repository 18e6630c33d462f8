//go:build probe

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imgedge/imgedge/client"
	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
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

func BenchmarkParInProcess(b *testing.B) {
	cfg := config.Default()
	proc := app.NewProcessor(cfg)
	src, _ := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", "sharp_2569067123_aca715a2ee_o.jpg"))
	info, _ := proc.Probe(src)
	spec := variant.Spec{Width: 720, Format: variant.FormatJPEG, Quality: 80}.Resolve(variant.ClassJPEG, variant.Defaults{})[0]
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := proc.Process(src, transform.Operation{Spec: spec, Source: info}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParColdLocal(b *testing.B) {
	st, _ := newLocalStoreDir(b)
	cfg := config.Default()
	if w := os.Getenv("WORKERS"); w != "" {
		cfg.Workers = int(w[0] - '0')
	}
	if p := os.Getenv("PAR"); p != "" {
		b.SetParallelism(int(p[0] - '0'))
	}
	srv, err := app.New(cfg, st, app.NewProcessor(cfg), slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.GRPC.Serve(lis)
	defer srv.GRPC.Stop()
	c, _ := client.New(lis.Addr().String(), client.WithInsecure())
	defer c.Close()
	src, _ := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", "sharp_2569067123_aca715a2ee_o.jpg"))
	for i := range 64 {
		putVia(b, st)(fmt.Sprintf("p/%d.jpg", i), src)
	}
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			w := uint32(700 - i/64)
			_, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: fmt.Sprintf("p/%d.jpg", i%64),
				Variant: &imgedgev1.VariantSpec{Width: &w, Format: imgedgev1.Format_FORMAT_JPEG, Quality: proto.Uint32(80)}})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
