package client

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a call may fail with, to test with errors.Is. The gRPC status stays
// reachable: status.FromError and status.Code work on every returned error.
var (
	ErrInvalid            = errors.New("invalid request")          // InvalidArgument
	ErrNotFound           = errors.New("not found")                // NotFound
	ErrFailedPrecondition = errors.New("not allowed for this key") // FailedPrecondition
	ErrPermissionDenied   = errors.New("permission denied")        // PermissionDenied
	ErrUnauthenticated    = errors.New("unauthenticated")          // Unauthenticated
	ErrOverloaded         = errors.New("overloaded, retry later")  // ResourceExhausted, reason OVERLOADED
	ErrTooLarge           = errors.New("image too large")          // ResourceExhausted, reason SOURCE_TOO_LARGE
	ErrUnavailable        = errors.New("service unavailable")      // Unavailable
	ErrDeadline           = errors.New("deadline exceeded")        // DeadlineExceeded
	ErrConflict           = errors.New("conflict, retry")          // Aborted
)

var codeErrors = map[codes.Code]error{
	codes.InvalidArgument:    ErrInvalid,
	codes.NotFound:           ErrNotFound,
	codes.FailedPrecondition: ErrFailedPrecondition,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.ResourceExhausted:  ErrOverloaded,
	codes.Unavailable:        ErrUnavailable,
	codes.DeadlineExceeded:   ErrDeadline,
	codes.Aborted:            ErrConflict,
}

// Error is a failed call: the gRPC status, matched by errors.Is against the
// sentinel errors of this package.
type Error struct {
	status *status.Status
}

func (e *Error) Error() string {
	return e.status.Code().String() + ": " + e.status.Message()
}

// ErrorInfo reasons the service sends with ResourceExhausted.
const (
	ReasonOverloaded     = "OVERLOADED"
	ReasonSourceTooLarge = "SOURCE_TOO_LARGE"
)

// Reason is the ErrorInfo reason the service attached, if any.
func (e *Error) Reason() string {
	for _, d := range e.status.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// GRPCStatus makes status.FromError and status.Code see the original status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Code is the gRPC code.
func (e *Error) Code() codes.Code { return e.status.Code() }

// Is matches the sentinel error for the status code, and the context errors
// for DeadlineExceeded and Canceled. ResourceExhausted is ErrTooLarge when
// the service says the image is over a limit (no retry helps), and
// ErrOverloaded otherwise.
func (e *Error) Is(target error) bool {
	switch e.status.Code() {
	case codes.ResourceExhausted:
		if e.Reason() == ReasonSourceTooLarge {
			return target == ErrTooLarge
		}
	case codes.DeadlineExceeded:
		if target == context.DeadlineExceeded {
			return true
		}
	case codes.Canceled:
		return target == context.Canceled
	}
	return codeErrors[e.status.Code()] == target
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &Error{status: s}
}
