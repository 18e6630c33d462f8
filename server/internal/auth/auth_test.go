package auth

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imgedge/imgedge/server/internal/testpki"
)

func TestTokens(t *testing.T) {
	tokens, err := NewTokens([]Token{
		{Name: "all", SHA256: HashToken("s3cret")},
		{Name: "scoped", Token: "narrow", Buckets: []string{"demo"}, Prefixes: []string{"photos/"}, Operations: []string{OpEnsure}},
		{Name: "old", Token: "stale", Expires: time.Now().Add(-time.Minute)},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Check(""); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("empty token: %v", err)
	}
	if _, err := tokens.Check("S3CRET"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong token: %v", err)
	}
	if _, err := tokens.Check("stale"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("expired token: %v", err)
	}
	all, err := tokens.Check("s3cret")
	if err != nil || all.Name != "all" || all.Allow(OpBackfill, "any", "thing") != nil {
		t.Errorf("full token: %+v %v", all, err)
	}
	scoped, err := tokens.Check("narrow")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op, bucket, key string
		ok              bool
	}{
		{OpEnsure, "demo", "photos/a.jpg", true},
		{OpEnsure, "other", "photos/a.jpg", false},
		{OpEnsure, "demo", "private/a.jpg", false},
		{OpTransform, "", "", false},
	} {
		err := scoped.Allow(c.op, c.bucket, c.key)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrPermissionDenied)) {
			t.Errorf("Allow(%s, %s, %s) = %v", c.op, c.bucket, c.key, err)
		}
	}
}

func TestTokensFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field": "tokens:\n  - {name: a, token: b, scope: x}\n",
		"no secret":     "tokens:\n  - {name: a}\n",
		"both":          "tokens:\n  - {name: a, token: b, sha256: " + HashToken("b") + "}\n",
		"bad hash":      "tokens:\n  - {name: a, sha256: abc}\n",
		"bad operation": "tokens:\n  - {name: a, token: b, operations: [delete]}\n",
	} {
		f := filepath.Join(dir, name+".yaml")
		os.WriteFile(f, []byte(body), 0o600)
		if _, err := NewTokens(nil, f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTLSFilesReloadWithoutDroppingConnections(t *testing.T) {
	dir := t.TempDir()
	first, second := testpki.NewCA(t, "first"), testpki.NewCA(t, "second")
	certFile, keyFile := first.Server(t).Write(t, dir, "server")
	files, err := NewTLSFiles(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", files.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) { // echo
				buf := make([]byte, 16)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}(c)
		}
	}()
	issuer := func(conn *tls.Conn) string { return conn.ConnectionState().PeerCertificates[0].Issuer.CommonName }
	dial := func(ca *testpki.CA) (*tls.Conn, error) {
		return tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	}
	old, err := dial(first)
	if err != nil || issuer(old) != "first" {
		t.Fatalf("first handshake: %v", err)
	}
	second.Server(t).Write(t, dir, "server")
	if !files.Changed() {
		time.Sleep(10 * time.Millisecond)
		future := time.Now().Add(time.Second)
		os.Chtimes(certFile, future, future)
	}
	if !files.Changed() {
		t.Fatal("a rewritten certificate is not noticed")
	}
	if err := files.Reload(); err != nil {
		t.Fatal(err)
	}
	fresh, err := dial(second)
	if err != nil || issuer(fresh) != "second" {
		t.Fatalf("handshake after reload: %v", err)
	}
	fresh.Close()
	// The connection made before the reload still works.
	if _, err := old.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := old.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("old connection after reload: %q %v", buf, err)
	}
	old.Close()
	// A broken file keeps the previous material.
	os.WriteFile(certFile, []byte("garbage"), 0o600)
	if err := files.Reload(); err == nil {
		t.Error("reloading a broken certificate succeeded")
	}
	if c, err := dial(second); err != nil {
		t.Errorf("after a failed reload: %v", err)
	} else {
		c.Close()
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		token, ok := bearerToken(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

// TestShippedSecretTokensLoad: the tokens.yaml the Kubernetes Secret ships
// loads strictly.
func TestShippedSecretTokensLoad(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "kubernetes", "secret.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var secret struct {
		StringData map[string]string `yaml:"stringData"`
	}
	if err := yaml.Unmarshal(raw, &secret); err != nil || secret.StringData["tokens.yaml"] == "" {
		t.Fatalf("secret.yaml: no tokens.yaml (%v)", err)
	}
	file := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(file, []byte(secret.StringData["tokens.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokens(nil, file)
	if err != nil {
		t.Fatalf("the Secret's tokens.yaml: %v", err)
	}
	if tokens.Len() == 0 {
		t.Error("the Secret's tokens.yaml holds no token")
	}
}
