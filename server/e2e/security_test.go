package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/app"
	"github.com/imgedge/imgedge/server/internal/auth"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/testpki"
)

func TestSecurityOverTLS(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, b := range []string{"demo", "private"} {
		if err := os.MkdirAll(filepath.Join(data, b, "photos"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, b, "photos", "a.jpg"), testimages.JPEG(640, 480, 95), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ca, clientCA, rogueCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "client CA"), testpki.NewCA(t, "rogue CA")
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	caFile := filepath.Join(dir, "ca.pem")
	testpki.WriteFile(t, caFile, ca.CertPEM)
	clientCAFile := filepath.Join(dir, "client-ca.pem")
	testpki.WriteFile(t, clientCAFile, clientCA.CertPEM)
	goodCert, goodKey := clientCA.Client(t, "batch-job").Write(t, dir, "good-client")
	rogueCert, rogueKey := rogueCA.Client(t, "intruder").Write(t, dir, "rogue-client")

	const (
		edgeToken    = "edge-secret-0123456789"
		demoToken    = "demo-only-secret-abcdef"
		xformToken   = "transform-only-secret-42"
		expiredToken = "expired-secret-zzz"
		rotatedToken = "rotated-out-secret-yyy"
	)
	tokensFile := filepath.Join(dir, "tokens.yaml")
	writeTokens := func(extra string) {
		body := "tokens:\n" +
			"  - {name: edge, sha256: " + auth.HashToken(edgeToken) + "}\n" +
			"  - {name: demo-reader, token: " + demoToken + ", buckets: [demo], prefixes: [photos/]}\n" +
			"  - {name: transformer, token: " + xformToken + ", operations: [transform]}\n" +
			"  - {name: old, token: " + expiredToken + ", expires: 2020-01-01T00:00:00Z}\n" + extra
		testpki.WriteFile(t, tokensFile, []byte(body))
	}
	writeTokens("  - {name: rotating, token: " + rotatedToken + "}\n")

	addr, logs := runServer(t, "--store", "file:"+data, "--tls-cert", certFile, "--tls-key", keyFile,
		"--client-ca", clientCAFile, "--tokens-file", tokensFile)

	dial := func(opts ...client.Option) *client.Client {
		c, err := client.New(addr, append([]client.Option{client.WithCAFile(caFile), client.WithServerName("localhost"),
			client.WithClientCertificate(goodCert, goodKey), client.WithDefaultDeadline(5 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ensure := func(c *client.Client, b string) error {
		_, err := c.EnsureVariant(context.Background(), &imgedgev1.EnsureVariantRequest{Bucket: b, Key: "photos/a.jpg", Variant: &imgedgev1.VariantSpec{Preset: "small"}})
		return err
	}

	tests := []struct {
		name   string
		client *client.Client
		bucket string
		code   codes.Code
	}{
		{"good token", dial(client.WithToken(edgeToken)), "private", codes.OK},
		{"no token", dial(), "demo", codes.Unauthenticated},
		{"wrong token", dial(client.WithToken("guess")), "demo", codes.Unauthenticated},
		{"scoped token, its bucket", dial(client.WithToken(demoToken)), "demo", codes.OK},
		{"scoped token, another bucket", dial(client.WithToken(demoToken)), "private", codes.PermissionDenied},
		{"token scoped to another operation", dial(client.WithToken(xformToken)), "demo", codes.PermissionDenied},
		{"expired token", dial(client.WithToken(expiredToken)), "demo", codes.Unauthenticated},
		{"token about to be rotated out", dial(client.WithToken(rotatedToken)), "demo", codes.OK},
	}
	for _, tt := range tests {
		if err := ensure(tt.client, tt.bucket); status.Code(err) != tt.code {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.code)
		}
	}

	// A client certificate from another CA fails the handshake.
	rogue, err := client.New(addr, client.WithCAFile(caFile), client.WithServerName("localhost"),
		client.WithClientCertificate(rogueCert, rogueKey), client.WithToken(edgeToken), client.WithDefaultDeadline(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	if err := ensure(rogue, "demo"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("client certificate from the wrong CA: %v, want Unavailable (handshake refused)", err)
	}
	// So does no client certificate at all.
	anon, _ := client.New(addr, client.WithCAFile(caFile), client.WithServerName("localhost"), client.WithToken(edgeToken), client.WithDefaultDeadline(3*time.Second))
	defer anon.Close()
	if err := ensure(anon, "demo"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("no client certificate: %v", err)
	}

	// Health stays reachable without a token (not without TLS).
	if err := dial().Health(context.Background(), ""); err != nil {
		t.Errorf("health without a token: %v", err)
	}

	// Rotate: remove a token; after the reload it no longer works, the others do.
	writeTokens("")
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(tokensFile, future, future)
	rotated := dial(client.WithToken(rotatedToken))
	waitFor(t, func() bool { return status.Code(ensure(rotated, "demo")) == codes.Unauthenticated })
	if err := ensure(dial(client.WithToken(edgeToken)), "demo"); err != nil {
		t.Errorf("a kept token after the reload: %v", err)
	}

	// The log names callers and never carries a secret.
	out := logs.String()
	for _, secret := range []string{edgeToken, demoToken, xformToken, expiredToken, rotatedToken} {
		if strings.Contains(out, secret) {
			t.Errorf("a token appears in the logs")
		}
	}
	if !strings.Contains(out, `"caller":"edge"`) || !strings.Contains(out, `"caller":"demo-reader"`) {
		t.Errorf("the access log does not name the callers:\n%s", out)
	}
}

func TestRefusesPlaintextOffLoopback(t *testing.T) {
	data := t.TempDir()
	err := app.Run(context.Background(), []string{"--grpc-addr", "0.0.0.0:0", "--store", "file:" + data, "--metrics-addr", ""}, os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "refusing to serve plaintext") {
		t.Fatalf("plaintext on 0.0.0.0: %v", err)
	}
	// With the explicit flag it starts (and stops with its context).
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := app.Run(ctx, []string{"--grpc-addr", "0.0.0.0:0", "--store", "file:" + data, "--metrics-addr", "", "--insecure", "--log-level", "error"}, &syncBuffer{}); err != nil {
		t.Fatalf("--insecure: %v", err)
	}
}

func TestRequestIDPropagates(t *testing.T) {
	data := t.TempDir()
	os.MkdirAll(filepath.Join(data, "demo"), 0o755)
	addr, logs := runServer(t, "--store", "file:"+data)
	c := dialClient(t, addr)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "req-42-abc")
	var trailer metadata.MD
	err := c.Conn().Invoke(ctx, imgedgev1.ImageTransformService_EnsureVariant_FullMethodName,
		&imgedgev1.EnsureVariantRequest{Bucket: "demo", Key: "missing.jpg"}, &imgedgev1.EnsureVariantResponse{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("call: %v", err)
	}
	if got := trailer.Get("x-request-id"); len(got) != 1 || got[0] != "req-42-abc" {
		t.Errorf("trailer request id %q", got)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), `"request_id":"req-42-abc"`) })
	if !strings.Contains(logs.String(), `"code":"NotFound"`) || !strings.Contains(logs.String(), `"key":"missing.jpg"`) {
		t.Errorf("access log:\n%s", logs.String())
	}
}
