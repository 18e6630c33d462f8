package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/transform"
)

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("x: %w", transform.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("x: %w", transform.ErrUnsupportedImage), codes.InvalidArgument},
		{fmt.Errorf("x: %w", transform.ErrTooLargeForFormat), codes.InvalidArgument},
		{fmt.Errorf("x: %w", variant.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("x: %w", variant.ErrBadKey), codes.InvalidArgument},
		{transform.ErrKeyNotAllowed, codes.FailedPrecondition},
		{transform.ErrBucketNotAllowed, codes.PermissionDenied},
		{transform.ErrTooLarge, codes.ResourceExhausted},
		{store.ErrTooLarge, codes.ResourceExhausted},
		{transform.ErrOverloaded, codes.ResourceExhausted},
		{fmt.Errorf("original: %w", store.ErrNotFound), codes.NotFound},
		{store.ErrBucketNotFound, codes.NotFound},
		{transform.ErrConflict, codes.Aborted},
		{fmt.Errorf("%w: dial tcp: refused", store.ErrUnavailable), codes.Unavailable},
		{status.Error(codes.Unauthenticated, "no"), codes.Unauthenticated},
		{errors.New("surprise"), codes.Internal},
	}
	for _, tt := range tests {
		if got := Code(tt.err); got != tt.want {
			t.Errorf("Code(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	// Internal errors do not leak their detail.
	if msg := status.Convert(toStatus(errors.New("secret detail"))).Message(); strings.Contains(msg, "secret") {
		t.Errorf("internal error message leaked: %q", msg)
	}
}

// TestResourceExhaustedSaysWhy: a client must tell "come back later" from
// "this image will never do", so only overload carries a retry hint.
func TestResourceExhaustedSaysWhy(t *testing.T) {
	tests := []struct {
		err       error
		reason    string
		retryHint bool
	}{
		{fmt.Errorf("%w: 2 workers busy", transform.ErrOverloaded), ReasonOverloaded, true},
		{fmt.Errorf("%w: 9000×9000", transform.ErrTooLarge), ReasonSourceTooLarge, false},
		{fmt.Errorf("%w: 60 MiB", store.ErrTooLarge), ReasonSourceTooLarge, false},
	}
	for _, tt := range tests {
		st := status.Convert(toStatus(tt.err))
		if st.Code() != codes.ResourceExhausted {
			t.Errorf("%v: code %v", tt.err, st.Code())
		}
		var reason string
		var hint bool
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				reason = d.GetReason()
				if d.GetDomain() != ErrorDomain {
					t.Errorf("%v: ErrorInfo domain %q", tt.err, d.GetDomain())
				}
			case *errdetails.RetryInfo:
				hint = true
			}
		}
		if reason != tt.reason || hint != tt.retryHint {
			t.Errorf("%v: reason %q, retry hint %v; want %q, %v", tt.err, reason, hint, tt.reason, tt.retryHint)
		}
	}
}
