package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgedge/imgedge/edgeadapter"
	"github.com/imgedge/imgedge/edgeadapter/httpedge"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/s3test"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/testimages"
)

// TestEdgeEndToEnd runs the whole path on loopback with real parts:
// versitygw holding an original, the real gRPC server, and the edge adapter
// in its HTTP mode fetching what CloudFront would fetch after it.
func TestEdgeEndToEnd(t *testing.T) {
	s3srv := s3test.Start(t)
	s3srv.CreateBucket(t, bucket)
	st := s3store.NewFromClient(s3srv.Client())
	original := testimages.JPEG(1600, 1200, 95)
	putVia(t, st)("photos/a.jpg", original)
	putVia(t, st)("photos/cat.jpg", original)

	h := &harness{store: &countingStore{Store: st}}
	h.proc = &countingProcessor{Processor: app.NewProcessor(config.Default())}
	cfg := config.Default()
	srv, err := app.New(cfg, h.store, h.proc, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, srv.GRPC)

	edgeCfg := edgeadapter.DefaultConfig()
	edgeCfg.Service = edgeadapter.Service{Address: addr, Insecure: true}
	edgeCfg.DeadlineMS, edgeCfg.LauncherDeadlineMS = 20_000, 25_000
	edgeCfg.MaxWaitMS = 19_000 // this test wants every build awaited
	adapter, err := edgeadapter.New(edgeCfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	edge := httptest.NewServer(&httpedge.Handler{Adapter: adapter, Bucket: bucket, Origin: httpedge.S3Origin{Client: s3srv.Client()}})
	t.Cleanup(edge.Close)

	get := func(path, accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, edge.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
		}
		return resp, body
	}

	resp, body := get("/photos/a.jpg", "")
	uri := resp.Header.Get("X-Imgedge-Uri")
	if uri != "/ProcessedImages/full_q80/photos/a.jpg.jpg" || resp.Header.Get("X-Imgedge-Action") != "rewrite" {
		t.Fatalf("first GET forwarded %q (%s)", uri, resp.Header.Get("X-Imgedge-Action"))
	}
	if _, format, err := testimages.Decode(body); err != nil || format != "jpeg" || len(body) >= len(original) {
		t.Fatalf("first GET: %d bytes of %q (original %d), %v", len(body), format, len(original), err)
	}
	resp2, body2 := get("/photos/a.jpg", "")
	if resp2.Header.Get("X-Imgedge-Uri") != uri || !bytes.Equal(body, body2) || h.proc.runs.Load() != 1 {
		t.Errorf("second GET: %q, %d transforms (want the existing variant, 1 transform)", resp2.Header.Get("X-Imgedge-Uri"), h.proc.runs.Load())
	}
	for accept, want := range map[string]string{
		"image/avif,image/webp,*/*": "image/avif",
		"image/webp,*/*":            "image/webp",
	} {
		resp, body := get("/photos/a.jpg", accept)
		if ct := resp.Header.Get("Content-Type"); ct != want || len(body) == 0 || len(body) >= len(original) {
			t.Errorf("Accept %s: %s, %d bytes", accept, ct, len(body))
		}
	}
	// A translucent original for a viewer of neither WebP nor AVIF: a PNG
	// that keeps its alpha, not a JPEG flattened onto white.
	putVia(t, st)("photos/logo.png", testimages.PNG(800, 600))
	resp, body = get("/photos/logo.png?preset=small", "")
	if uri := resp.Header.Get("X-Imgedge-Uri"); uri != "/ProcessedImages/w480/photos/logo.png.png" || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("translucent PNG, no Accept: forwarded %q (%s)", uri, resp.Header.Get("Content-Type"))
	} else if img, _, err := testimages.Decode(body); err != nil || opaque(img) {
		t.Errorf("translucent PNG, no Accept: the variant lost its alpha (%v)", err)
	}
	// An animated GIF is an animated WebP for a viewer of WebP or AVIF
	// (AVIF keeps no frames), and the original itself for any other: a
	// variant would be still.
	banner := testimages.AnimatedGIF(160, 120, 4)
	putVia(t, st)("photos/banner.gif", banner)
	resp, body = get("/photos/banner.gif?preset=small", "image/avif,image/webp,*/*")
	if uri := resp.Header.Get("X-Imgedge-Uri"); uri != "/ProcessedImages/w480_q75/photos/banner.gif.webp" || resp.Header.Get("Content-Type") != "image/webp" || len(body) >= len(banner) {
		t.Errorf("animated GIF, AVIF viewer: forwarded %q (%s), %d bytes (the original: %d)", uri, resp.Header.Get("Content-Type"), len(body), len(banner))
	} else if info, err := h.proc.Probe(body); err != nil || info.Frames != 4 || info.Width != 160 {
		t.Errorf("animated GIF, AVIF viewer: the WebP is %+v (%v), want 4 frames of 160 px", info, err)
	}
	resp, body = get("/photos/banner.gif?preset=small", "")
	if uri := resp.Header.Get("X-Imgedge-Uri"); uri != "/photos/banner.gif" || !bytes.Equal(body, banner) {
		t.Errorf("animated GIF, no Accept: forwarded %q, %d bytes (want the original's %d)", uri, len(body), len(banner))
	}
	// A request the adapter does not handle goes to the origin as it came.
	putVia(t, st)("notes.txt", []byte("plain text"))
	if resp, body := get("/notes.txt", ""); resp.Header.Get("X-Imgedge-Uri") != "/notes.txt" || string(body) != "plain text" {
		t.Errorf("pass-through: %q %q", resp.Header.Get("X-Imgedge-Uri"), body)
	}

	t.Run("launcher", func(t *testing.T) { runLauncherAgainst(t, addr) })
}

// TestEdgeColdMissAnswersPending: a cold miss for a variant that takes
// longer than the edge's max_wait (full-size AVIF of an 8 MP photo) falls
// back to the original when max_wait runs out instead of at the deadline,
// and a later request, once the build has stored the variant, rewrites.
func TestEdgeColdMissAnswersPending(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 8 MP AVIFs")
	}
	st, dir := newLocalStoreDir(t)
	origin, err := httpedge.OpenOrigin(context.Background(), "file:"+dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	original := testimages.JPEG(3264, 2448, 92) // 8 MP
	putVia(t, st)("photos/big.jpg", original)
	putVia(t, st)("photos/big-patient.jpg", original)
	srv, err := app.New(config.Default(), st, app.NewProcessor(config.Default()), slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, srv.GRPC)
	edgeFor := func(maxWaitMS int) *httptest.Server {
		cfg := edgeadapter.DefaultConfig()
		cfg.Service = edgeadapter.Service{Address: addr, Insecure: true}
		cfg.DeadlineMS, cfg.LauncherDeadlineMS, cfg.MaxWaitMS = 20_000, 25_000, maxWaitMS
		adapter, err := edgeadapter.New(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		edge := httptest.NewServer(&httpedge.Handler{Adapter: adapter, Bucket: bucket, Origin: origin})
		t.Cleanup(edge.Close)
		return edge
	}
	get := func(edge *httptest.Server, path string) (action string, took time.Duration, body []byte) {
		req, _ := http.NewRequest(http.MethodGet, edge.URL+path, nil)
		req.Header.Set("Accept", "image/avif,image/webp,*/*")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.Header.Get("X-Imgedge-Action"), time.Since(start), body
	}

	// Before: an edge that waits for the whole build.
	action, patient, _ := get(edgeFor(19_000), "/photos/big-patient.jpg")
	if action != "rewrite" {
		t.Fatalf("patient edge: %s", action)
	}
	// After: a budget shorter than the build (the synthetic photo encodes
	// faster than a real one, so the budget here is shorter than the
	// default 1000 ms).
	edge := edgeFor(50)
	action, took, body := get(edge, "/photos/big.jpg")
	if action != "fallback" || !bytes.Equal(body, original) {
		t.Fatalf("cold miss: %s, %d bytes; want a fallback to the %d-byte original", action, len(body), len(original))
	}
	t.Logf("cold full-size AVIF miss of an 8 MP photo: %v waiting for the build, %v with max_wait 50 ms", patient.Round(time.Millisecond), took.Round(time.Millisecond))
	waitFor(t, func() bool {
		action, _, _ := get(edge, "/photos/big.jpg")
		return action == "rewrite"
	})
}

// runLauncherAgainst runs the Node.js launcher's tests, including the one
// that needs a live service, against the real adapter binary.
func runLauncherAgainst(t *testing.T, addr string) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	bin := filepath.Join(t.TempDir(), "imgedge-edge")
	build := exec.Command("go", "build", "-o", bin, "github.com/imgedge/imgedge/edgeadapter/cmd/imgedge-edge")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the adapter: %v\n%s", err, out)
	}
	cmd := exec.Command(node, "--test", "--test-name-pattern=rewritten by the real service")
	cmd.Dir = filepath.Join("..", "..", "edgeadapter", "lambda")
	cmd.Env = append(os.Environ(), "IMGEDGE_EDGE_BIN="+bin, "IMGEDGE_EDGE_SERVICE="+addr, "IMGEDGE_EDGE_BUCKET="+bucket)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "# pass 1") {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
}
