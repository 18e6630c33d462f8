package e2e

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgedge/imgedge/edgeadapter"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/testpki"
)

// TestEdgeDialsTLS: the edge adapter reaches the real server over TLS only
// when it trusts the server's CA, and falls back, untouched, otherwise.
func TestEdgeDialsTLS(t *testing.T) {
	st, data := newLocalStoreDir(t)
	putVia(t, st)("photos/cat.jpg", testimages.JPEG(800, 600, 95))
	ca, otherCA := testpki.NewCA(t, "service CA"), testpki.NewCA(t, "another CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	goodCA, wrongCA := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	testpki.WriteFile(t, goodCA, ca.CertPEM)
	testpki.WriteFile(t, wrongCA, otherCA.CertPEM)
	addr, _ := runServer(t, "--store", "file:"+data, "--tls-cert", certFile, "--tls-key", keyFile, "--log-level", "error")

	event, err := os.ReadFile(filepath.Join("..", "..", "edgeadapter", "cloudfront", "testdata", "s3_plain.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		svc  edgeadapter.Service
		want edgeadapter.Action
	}{
		"the service's CA":   {edgeadapter.Service{Address: addr, CAFile: goodCA, ServerName: "localhost"}, edgeadapter.Rewrite},
		"another CA":         {edgeadapter.Service{Address: addr, CAFile: wrongCA, ServerName: "localhost"}, edgeadapter.Fallback},
		"plaintext to TLS":   {edgeadapter.Service{Address: addr, Insecure: true}, edgeadapter.Fallback},
		"the wrong hostname": {edgeadapter.Service{Address: addr, CAFile: goodCA, ServerName: "imgedge.invalid"}, edgeadapter.Fallback},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := edgeadapter.DefaultConfig()
			cfg.Service = tt.svc
			cfg.DeadlineMS, cfg.LauncherDeadlineMS, cfg.MaxWaitMS = 10_000, 11_000, 9_000
			a, err := edgeadapter.New(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, d, err := a.HandleEvent(ctx, event)
			if err != nil || d.Action != tt.want {
				t.Errorf("%s (%s), %v; want %s", d.Action, d.Reason, err, tt.want)
			}
		})
	}
}
