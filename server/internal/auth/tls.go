package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// TLSFiles serves a certificate and, optionally, a client CA from files,
// reloading them on Reload without dropping open connections: new
// handshakes see the new material, established connections keep theirs.
type TLSFiles struct {
	CertFile, KeyFile string
	ClientCAFile      string // empty: no client certificates asked for

	mu      sync.RWMutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	modTime time.Time
}

// NewTLSFiles loads the files once.
func NewTLSFiles(certFile, keyFile, clientCAFile string) (*TLSFiles, error) {
	f := &TLSFiles{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCAFile}
	return f, f.Reload()
}

// Reload re-reads the files. On error the previous material stays in use.
func (f *TLSFiles) Reload() error {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	var pool *x509.CertPool
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client CA %s holds no PEM certificate", f.ClientCAFile)
		}
	}
	f.mu.Lock()
	f.cert, f.pool, f.modTime = &cert, pool, f.latestModTime()
	f.mu.Unlock()
	return nil
}

func (f *TLSFiles) latestModTime() time.Time {
	var latest time.Time
	for _, p := range []string{f.CertFile, f.KeyFile, f.ClientCAFile} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(latest) {
			latest = fi.ModTime()
		}
	}
	return latest
}

// Changed reports whether a file changed since the last load.
func (f *TLSFiles) Changed() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.latestModTime().After(f.modTime)
}

// Config returns a server TLS configuration that always uses the current
// material.
func (f *TLSFiles) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.mu.RLock()
			defer f.mu.RUnlock()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*f.cert},
				NextProtos:   []string{"h2"},
			}
			if f.pool != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = f.pool
			}
			return c, nil
		},
	}
}

// Reloader is file-backed material Watch keeps current.
type Reloader interface {
	// Changed reports whether the files changed since the last load.
	Changed() bool
	// Reload loads the files again, keeping the previous material on error.
	Reload() error
}

// Watch reloads every r when a signal arrives on hup or when its files
// change (checked every interval). It returns
// when ctx ends. report receives each reload's error (nil on success).
func Watch(ctx context.Context, hup <-chan os.Signal, interval time.Duration, report func(name string, err error), rs map[string]Reloader) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			for name, r := range rs {
				report(name, r.Reload())
			}
		case <-tick.C:
			for name, r := range rs {
				if r.Changed() {
					report(name, r.Reload())
				}
			}
		}
	}
}
