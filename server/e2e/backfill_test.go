package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/s3test"
	"github.com/imgedge/imgedge/server/internal/store"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

func TestBackfillOnS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, bucket)
	st := s3store.NewFromClient(srv.Client())
	put := putVia(t, st)
	const originals = 30
	for i := range originals {
		put(fmt.Sprintf("gallery/%02d.jpg", i), testimages.JPEG(400+8*i, 300, 95))
	}
	put("gallery/readme.txt", []byte("not an image"))
	put("elsewhere/x.jpg", testimages.JPEG(100, 100, 95))
	h := startServer(t, st, nil)
	c := dialClient(t, h.addr)
	req := &imgedgev1.BackfillRequest{Bucket: bucket, Prefix: "gallery/", Concurrency: 2, Variant: &imgedgev1.VariantSpec{Preset: "small", Viewer: &imgedgev1.VariantSpec_Accept{Accept: "image/webp"}}}

	variants := func() map[string]int64 {
		t.Helper()
		out := map[string]int64{}
		err := st.Walk(context.Background(), bucket, "ProcessedImages/", "", func(o store.ObjectInfo) error {
			out[o.Key] = o.Size
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run := func(r *imgedgev1.BackfillRequest) (*imgedgev1.BackfillSummary, []*imgedgev1.BackfillProgress) {
		t.Helper()
		var events []*imgedgev1.BackfillProgress
		sum, err := c.Backfill(context.Background(), r, func(p *imgedgev1.BackfillProgress) { events = append(events, p) })
		if err != nil {
			t.Fatal(err)
		}
		return sum, events
	}

	// A dry run writes nothing.
	dry, _ := run(&imgedgev1.BackfillRequest{Bucket: req.Bucket, Prefix: req.Prefix, DryRun: true, Variant: req.Variant})
	if dry.GetCreated() != originals || !dry.GetDryRun() || len(variants()) != 0 || h.store.puts.Load() != 0 {
		t.Fatalf("dry run: %v, %d variants stored", dry, len(variants()))
	}

	// Cancelled mid-way: complete objects only, and the next run finishes the rest.
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	_, err := c.Backfill(ctx, req, func(*imgedgev1.BackfillProgress) {
		if seen++; seen == 8 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backfill: %v", err)
	}
	// Builds already running when the call was cancelled complete (their
	// writes are atomic); wait for them to land before counting.
	partial := variants()
	for settled := false; !settled; {
		time.Sleep(300 * time.Millisecond)
		now := variants()
		settled = len(now) == len(partial)
		partial = now
	}
	if len(partial) < 8 || len(partial) >= originals {
		t.Fatalf("%d variants after cancelling at 8 of %d", len(partial), originals)
	}
	for key := range partial {
		data := getVia(t, st)(key)
		if info, err := h.proc.Probe(data); err != nil || info.Format != "webp" {
			t.Fatalf("%s is not a complete WebP: %v", key, err)
		}
	}

	sum, events := run(req)
	stored := variants()
	var storedBytes int64
	for _, size := range stored {
		storedBytes += size
	}
	if sum.GetObjects() != originals+1 || sum.GetSkipped() != 1 || sum.GetErrors() != 0 ||
		sum.GetCreated() != int64(originals-len(partial)) || sum.GetAlreadyExisted() != int64(len(partial)) || len(stored) != originals {
		t.Fatalf("resumed run: %v (%d were done before)", sum, len(partial))
	}
	if sum.GetVariantBytes() != storedBytes || sum.GetServedBytes() != storedBytes || sum.GetOriginalBytes() <= storedBytes {
		t.Errorf("summary bytes %d/%d, stored %d", sum.GetVariantBytes(), sum.GetServedBytes(), storedBytes)
	}
	if len(events) != originals {
		t.Errorf("%d progress events, want %d", len(events), originals)
	}
	for _, e := range events {
		if !strings.HasPrefix(e.GetKey(), "gallery/") || e.GetVariantSize() != stored[e.GetVariantKey()] {
			t.Errorf("event %v does not match the store", e)
		}
	}

	// Everything exists now: the next run writes nothing.
	puts := h.store.puts.Load()
	again, _ := run(req)
	if again.GetAlreadyExisted() != originals || again.GetCreated() != 0 || h.store.puts.Load() != puts {
		t.Errorf("third run: %v, %d new writes", again, h.store.puts.Load()-puts)
	}
}
