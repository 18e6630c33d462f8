package auth

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

// Guard authenticates calls to the imgedge service. Health checks and
// server reflection stay open: probes must reach them, and reflection only
// describes the public API (the same .proto anyone can read); it lists no
// buckets, keys or tokens.
type Guard struct {
	// Tokens, when it holds any, makes a valid bearer token mandatory.
	Tokens *Tokens
	// ClientCerts says client certificates are verified at the TLS layer:
	// with no tokens configured, a verified certificate is enough.
	ClientCerts bool
	// OnIdentity, when set, receives each caller's identity (for the access log).
	OnIdentity func(ctx context.Context, name string)
}

// Enabled reports whether the guard checks anything.
func (g *Guard) Enabled() bool { return g.ClientCerts || (g.Tokens != nil && g.Tokens.Len() > 0) }

func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

var operations = map[string]string{
	imgedgev1.ImageTransformService_EnsureVariant_FullMethodName: OpEnsure,
	imgedgev1.ImageTransformService_Transform_FullMethodName:     OpTransform,
	imgedgev1.ImageTransformService_Backfill_FullMethodName:      OpBackfill,
}

// identify authenticates the caller of ctx.
func (g *Guard) identify(ctx context.Context) (Identity, error) {
	if g.Tokens != nil && g.Tokens.Len() > 0 {
		md, _ := metadata.FromIncomingContext(ctx)
		var presented string
		for _, v := range md.Get("authorization") {
			if t, ok := bearerToken(v); ok {
				presented = t
			}
		}
		return g.Tokens.Check(presented)
	}
	if g.ClientCerts {
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
				return Identity{Name: "cert:" + ti.State.VerifiedChains[0][0].Subject.CommonName}, nil
			}
		}
		return Identity{}, errors.New("unauthenticated: no verified client certificate")
	}
	return Identity{Name: "anonymous"}, nil
}

// check authenticates, then authorises the operation on the request's bucket
// and key when the request names them.
func (g *Guard) check(ctx context.Context, method string, req any) error {
	id, err := g.identify(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	if g.OnIdentity != nil {
		g.OnIdentity(ctx, id.Name)
	}
	if err := g.authorize(id, method, req); err != nil {
		return err
	}
	return nil
}

func (g *Guard) authorize(id Identity, method string, req any) error {
	op := operations[method]
	var bucket, key string
	switch r := req.(type) {
	case *imgedgev1.EnsureVariantRequest:
		bucket, key = r.GetBucket(), r.GetKey()
	case *imgedgev1.BackfillRequest:
		bucket, key = r.GetBucket(), r.GetPrefix()
	}
	if err := id.Allow(op, bucket, key); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// ServerOptions install the guard on every RPC.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if open(info.FullMethod) {
				return handler(ctx, req)
			}
			if err := g.check(ctx, info.FullMethod, req); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if open(info.FullMethod) {
				return handler(srv, ss)
			}
			id, err := g.identify(ss.Context())
			if err != nil {
				return status.Error(codes.Unauthenticated, err.Error())
			}
			if g.OnIdentity != nil {
				g.OnIdentity(ss.Context(), id.Name)
			}
			if err := g.authorize(id, info.FullMethod, nil); err != nil {
				return err
			}
			return handler(srv, &guardedStream{ServerStream: ss, guard: g, id: id, method: info.FullMethod})
		}),
	}
}

// guardedStream authorises the first message of a stream (a Backfill
// request names its bucket and prefix there).
type guardedStream struct {
	grpc.ServerStream
	guard   *Guard
	id      Identity
	method  string
	checked bool
}

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.checked {
		s.checked = true
		return s.guard.authorize(s.id, s.method, m)
	}
	return nil
}

// bearerToken reads "Bearer <token>"; the scheme name is case-insensitive
// (RFC 7235, section 2.1) and may be followed by several spaces.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
