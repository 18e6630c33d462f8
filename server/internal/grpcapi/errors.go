package grpcapi

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/store"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// errorCodes is the one mapping from domain errors to gRPC codes, checked in
// order. Messages come from the wrapped errors, which name what was wrong
// and never carry credentials (the stores never put them in errors).
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
	{transform.ErrInvalidArgument, codes.InvalidArgument},
	{transform.ErrUnsupportedImage, codes.InvalidArgument},
	{transform.ErrTooLargeForFormat, codes.InvalidArgument},
	{variant.ErrInvalid, codes.InvalidArgument},
	{variant.ErrBadKey, codes.InvalidArgument},
	{transform.ErrKeyNotAllowed, codes.FailedPrecondition},
	{transform.ErrBucketNotAllowed, codes.PermissionDenied},
	{transform.ErrTooLarge, codes.ResourceExhausted},
	{transform.ErrOverloaded, codes.ResourceExhausted},
	{store.ErrNotFound, codes.NotFound},
	{store.ErrForbidden, codes.PermissionDenied},
	{store.ErrBucketNotFound, codes.NotFound},
	{transform.ErrConflict, codes.Aborted},
	{store.ErrPreconditionFailed, codes.Aborted},
	{store.ErrUnavailable, codes.Unavailable},
}

// Code returns the gRPC code for a domain error.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	return codes.Internal
}

// toStatus converts a domain error into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := Code(err)
	if code == codes.Internal {
		return status.Error(code, "internal error")
	}
	st := status.New(code, err.Error())
	var details []protoadapt.MessageV1
	switch {
	case errors.Is(err, transform.ErrOverloaded):
		// Tell well-behaved clients when to come back.
		details = append(details,
			&errdetails.ErrorInfo{Reason: ReasonOverloaded, Domain: ErrorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(RetryAfter)})
	case errors.Is(err, transform.ErrTooLarge):
		// The same request will never succeed: no retry hint.
		details = append(details, &errdetails.ErrorInfo{Reason: ReasonSourceTooLarge, Domain: ErrorDomain})
	}
	if len(details) > 0 {
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// ErrorInfo reasons that tell the two kinds of ResourceExhausted apart.
const (
	ErrorDomain = "imgedge.v1"
	// ReasonOverloaded: the service is full; retry after the RetryInfo delay.
	ReasonOverloaded = "OVERLOADED"
	// ReasonSourceTooLarge: this image is over a byte, pixel or memory
	// limit; retrying the same request never helps.
	ReasonSourceTooLarge = "SOURCE_TOO_LARGE"
)

// RetryAfter is the retry hint sent with overload rejections.
var RetryAfter = time.Second
