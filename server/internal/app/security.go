package app

import (
	"fmt"

	"github.com/imgedge/imgedge/server/internal/auth"
	"github.com/imgedge/imgedge/server/internal/config"
)

// Security is the transport and authentication setup.
type Security struct {
	tls       *auth.TLSFiles
	tokens    *auth.Tokens
	reloaders map[string]auth.Reloader
}

// NewSecurity loads TLS and tokens, and refuses an unprotected server on a
// non-loopback address unless --insecure says so.
func NewSecurity(cfg config.Config) (*Security, error) {
	s := &Security{reloaders: map[string]auth.Reloader{}}
	var err error
	if s.tokens, err = auth.NewTokens(cfg.Tokens, cfg.TokensFile); err != nil {
		return nil, err
	}
	if cfg.TokensFile != "" {
		s.reloaders["tokens"] = s.tokens
	}
	if cfg.TLSCert != "" {
		if s.tls, err = auth.NewTLSFiles(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA); err != nil {
			return nil, err
		}
		s.reloaders["tls"] = s.tls
	}
	if !cfg.Loopback() && !cfg.Insecure {
		if s.tls == nil {
			return nil, fmt.Errorf("refusing to serve plaintext on %s: give --tls-cert and --tls-key, or --insecure", cfg.GRPCAddr)
		}
		if s.tokens.Len() == 0 && cfg.ClientCA == "" {
			return nil, fmt.Errorf("refusing to serve %s without authentication: give --tokens-file or --client-ca, or --insecure", cfg.GRPCAddr)
		}
	}
	return s, nil
}
