package grpcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RequestIDHeader is the metadata key carrying a caller's request id. It is
// propagated to the access log and echoed in the response trailer.
const RequestIDHeader = "x-request-id"

// logAttrs collects attributes that handlers add for the access log line.
type logAttrs struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

type logAttrsKey struct{}

// AddLogAttrs adds attributes to the current call's access log line (for
// example the caller's identity, from the authentication interceptor).
func AddLogAttrs(ctx context.Context, attrs ...slog.Attr) { setLogAttrs(ctx, attrs...) }

// setLogAttrs adds attributes to the current call's access log line.
func setLogAttrs(ctx context.Context, attrs ...slog.Attr) {
	if la, ok := ctx.Value(logAttrsKey{}).(*logAttrs); ok {
		la.mu.Lock()
		la.attrs = append(la.attrs, attrs...)
		la.mu.Unlock()
	}
}

// Interceptors returns the server options that recover panics and write one
// structured access log line per call.
func Interceptors(logger *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
			ctx, finish := beginCall(ctx, logger, info.FullMethod)
			defer func() { err = finish(recover(), err) }()
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
			ctx, finish := beginCall(ss.Context(), logger, info.FullMethod)
			defer func() { err = finish(recover(), err) }()
			return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		}),
	}
}

// beginCall prepares a call's context and returns the function that ends
// it: it turns a panic into Internal and logs the call.
func beginCall(ctx context.Context, logger *slog.Logger, method string) (context.Context, func(panicked any, err error) error) {
	start := time.Now()
	requestID := ""
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) > 0 && len(v[0]) <= 128 {
		requestID = v[0]
	}
	if requestID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		requestID = hex.EncodeToString(b[:])
	}
	// A trailer, not a header: header metadata would turn error answers into
	// non-trailers-only responses, which clients then refuse to retry.
	_ = grpc.SetTrailer(ctx, metadata.Pairs(RequestIDHeader, requestID))
	la := &logAttrs{}
	ctx = context.WithValue(ctx, logAttrsKey{}, la)
	return ctx, func(panicked any, err error) error {
		if panicked != nil {
			logger.ErrorContext(ctx, "panic in handler", slog.String("method", method), slog.Any("panic", panicked), slog.String("stack", string(debug.Stack())))
			err = status.Error(codes.Internal, "internal error")
		}
		code := status.Code(err)
		attrs := []slog.Attr{
			slog.String("method", method),
			slog.String("code", code.String()),
			slog.Duration("duration", time.Since(start)),
			slog.String("request_id", requestID),
		}
		la.mu.Lock()
		attrs = append(attrs, la.attrs...)
		la.mu.Unlock()
		if err != nil {
			attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
		}
		level := slog.LevelInfo
		if code == codes.Internal || code == codes.Unknown || code == codes.DataLoss {
			level = slog.LevelError
		}
		logger.LogAttrs(ctx, level, "rpc", attrs...)
		return err
	}
}

// contextStream swaps a stream's context for one carrying the call's state.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// CallTimeout bounds EnsureVariant and Transform calls that arrive with no
// deadline, or a longer one. Backfill, bounded by its caller, is exempt.
func CallTimeout(d time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if info.IsServerStream && !info.IsClientStream { // Backfill
				return handler(srv, ss)
			}
			ctx, cancel := context.WithTimeout(ss.Context(), d)
			defer cancel()
			return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		}),
	}
}
