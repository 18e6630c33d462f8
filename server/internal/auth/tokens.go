// Package auth authenticates and authorises gRPC callers: bearer tokens
// (compared in constant time through their SHA-256, several at once so they
// can be rotated, each optionally scoped to buckets, key prefixes and
// operations, optionally expiring), verified client certificates, and the TLS
// material that reloads without dropping connections. Secrets never leave
// this package: callers see a token's name, never the token.
package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Operations a token may be scoped to.
const (
	OpEnsure    = "ensure"
	OpTransform = "transform"
	OpBackfill  = "backfill"
)

// Token is one accepted credential.
type Token struct {
	// Name identifies the caller in logs and metrics.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token (preferred: the file then holds
	// no secret). Token is the plain token, accepted for convenience.
	SHA256 string `yaml:"sha256,omitempty"`
	Token  string `yaml:"token,omitempty"`
	// Buckets the token may use; empty: any.
	Buckets []string `yaml:"buckets,omitempty"`
	// Prefixes of the keys the token may use; empty: any.
	Prefixes []string `yaml:"prefixes,omitempty"`
	// Operations the token may call (ensure, transform, backfill); empty: all.
	Operations []string `yaml:"operations,omitempty"`
	// Expires, when set, is when the token stops working.
	Expires time.Time `yaml:"expires,omitempty"`
}

// HashToken returns the hex SHA-256 of a token, as the sha256 field wants it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

type compiled struct {
	Token
	hash []byte
}

// Identity is an authenticated caller and what it may do.
type Identity struct {
	Name       string
	buckets    []string
	prefixes   []string
	operations []string
}

// ErrUnauthenticated means no credential, or not a valid one.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrPermissionDenied means a valid credential, outside its scope.
var ErrPermissionDenied = errors.New("permission denied")

// Allow checks an operation on a bucket and key (or key prefix) against the
// identity's scope. Empty bucket or key skip those checks.
func (id Identity) Allow(op, bucket, key string) error {
	if len(id.operations) > 0 && !slices.Contains(id.operations, op) {
		return fmt.Errorf("%w: %s may not call %s", ErrPermissionDenied, id.Name, op)
	}
	if bucket != "" && len(id.buckets) > 0 && !slices.Contains(id.buckets, bucket) {
		return fmt.Errorf("%w: %s may not use bucket %q", ErrPermissionDenied, id.Name, bucket)
	}
	if len(id.prefixes) > 0 && (bucket != "" || key != "") {
		if !slices.ContainsFunc(id.prefixes, func(p string) bool { return strings.HasPrefix(key, p) }) {
			return fmt.Errorf("%w: %s may not use keys under %q", ErrPermissionDenied, id.Name, key)
		}
	}
	return nil
}

// Tokens is the set of accepted tokens: inline ones from the configuration
// plus those of a file that Reload re-reads.
type Tokens struct {
	file   string
	inline []Token
	now    func() time.Time

	mu      sync.RWMutex
	tokens  []compiled
	modTime time.Time
}

// NewTokens loads the inline tokens and the file (either may be empty).
func NewTokens(inline []Token, file string) (*Tokens, error) {
	t := &Tokens{file: file, inline: inline, now: time.Now}
	return t, t.Reload()
}

// Reload re-reads the tokens file. On error the previous set stays.
func (t *Tokens) Reload() error {
	all := slices.Clone(t.inline)
	if t.file != "" {
		raw, err := os.ReadFile(t.file)
		if err != nil {
			return fmt.Errorf("tokens file: %w", err)
		}
		var f struct {
			Tokens []Token `yaml:"tokens"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("tokens file %s: %w", t.file, err)
		}
		all = append(all, f.Tokens...)
	}
	set, err := compile(all)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.tokens, t.modTime = set, t.fileModTime()
	t.mu.Unlock()
	return nil
}

func (t *Tokens) fileModTime() time.Time {
	if t.file == "" {
		return time.Time{}
	}
	fi, err := os.Stat(t.file)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// Changed reports whether the tokens file changed since the last load.
func (t *Tokens) Changed() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.file != "" && !t.fileModTime().Equal(t.modTime)
}

func compile(tokens []Token) ([]compiled, error) {
	var errs []error
	out := make([]compiled, 0, len(tokens))
	for i, tok := range tokens {
		if tok.Name == "" {
			errs = append(errs, fmt.Errorf("token %d has no name", i+1))
		}
		hash := tok.SHA256
		switch {
		case tok.Token != "" && hash != "":
			errs = append(errs, fmt.Errorf("token %q: give token or sha256, not both", tok.Name))
		case tok.Token != "":
			hash = HashToken(tok.Token)
		case hash == "":
			errs = append(errs, fmt.Errorf("token %q has neither token nor sha256", tok.Name))
		}
		raw, err := hex.DecodeString(strings.ToLower(hash))
		if hash != "" && (err != nil || len(raw) != sha256.Size) {
			errs = append(errs, fmt.Errorf("token %q: sha256 must be 64 hex digits", tok.Name))
		}
		for _, op := range tok.Operations {
			if op != OpEnsure && op != OpTransform && op != OpBackfill {
				errs = append(errs, fmt.Errorf("token %q: unknown operation %q", tok.Name, op))
			}
		}
		tok.Token = "" // keep no secret in memory beyond its hash
		out = append(out, compiled{Token: tok, hash: raw})
	}
	return out, errors.Join(errs...)
}

// Len is the number of tokens loaded.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.tokens)
}

// Check finds the identity of a presented token. Every configured hash is
// compared, in constant time, whatever matches first.
func (t *Tokens) Check(presented string) (Identity, error) {
	if presented == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(presented))
	t.mu.RLock()
	defer t.mu.RUnlock()
	match := -1
	for i, c := range t.tokens {
		if subtle.ConstantTimeCompare(sum[:], c.hash) == 1 && match < 0 {
			match = i
		}
	}
	if match < 0 {
		return Identity{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	c := t.tokens[match]
	if !c.Expires.IsZero() && t.now().After(c.Expires) {
		return Identity{}, fmt.Errorf("%w: token %q expired at %s", ErrUnauthenticated, c.Name, c.Expires.Format(time.RFC3339))
	}
	return Identity{Name: c.Name, buckets: c.Buckets, prefixes: c.Prefixes, operations: c.Operations}, nil
}
