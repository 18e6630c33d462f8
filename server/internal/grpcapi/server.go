// Package grpcapi exposes the transform service over gRPC: it converts
// between the imgedge.v1 messages and the domain, maps domain errors to
// status codes in one place, streams Transform's bytes in chunks, and
// provides the interceptors (access log, panic recovery).
package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgedge/imgedge/client/variant"
	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// Service is what the API needs from the domain.
type Service interface {
	EnsureVariant(ctx context.Context, bucket, key string, req transform.Request) (transform.EnsureResult, error)
	StartTransform(req transform.Request) (*transform.Upload, error)
	Backfill(ctx context.Context, bucket, prefix string, req transform.Request, concurrency int, emit func(transform.BackfillItem) error) (transform.BackfillSummary, error)
}

// Options tune the API layer.
type Options struct {
	// ChunkSize is the size of the chunks Transform sends out.
	ChunkSize int
	Logger    *slog.Logger
}

// Server implements imgedgev1.ImageTransformServiceServer.
type Server struct {
	imgedgev1.UnimplementedImageTransformServiceServer
	svc  Service
	opts Options
}

// NewServer returns the gRPC API over svc.
func NewServer(svc Service, opts Options) *Server {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 256 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{svc: svc, opts: opts}
}

// EnsureVariant implements the RPC of the same name.
func (s *Server) EnsureVariant(ctx context.Context, in *imgedgev1.EnsureVariantRequest) (*imgedgev1.EnsureVariantResponse, error) {
	v, err := variant.FromProto(in.GetVariant())
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	req := transform.Request{Variant: v}
	if in.MaxWait != nil {
		if err := in.MaxWait.CheckValid(); err != nil || in.MaxWait.AsDuration() < 0 {
			return nil, s.fail(ctx, fmt.Errorf("%w: max_wait %v is not a duration of zero or more", transform.ErrInvalidArgument, in.MaxWait))
		}
		req.MaxWait = in.MaxWait.AsDuration()
	}
	setLogAttrs(ctx, slog.String("bucket", in.GetBucket()), slog.String("key", in.GetKey()))
	res, err := s.svc.EnsureVariant(ctx, in.GetBucket(), in.GetKey(), req)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	setLogAttrs(ctx, slog.String("outcome", res.Outcome.String()), slog.String("served_key", res.Key),
		slog.Int64("original_bytes", res.OriginalSize), slog.Int64("served_bytes", res.Size))
	resp := &imgedgev1.EnsureVariantResponse{
		Outcome:      outcomeToProto(res.Outcome),
		Key:          res.Key,
		ContentType:  res.ContentType,
		Size:         res.Size,
		Etag:         res.ETag,
		OriginalSize: res.OriginalSize,
		VariantKey:   res.VariantKey,
		Format:       imgedgev1.Format(res.Spec.Format),
	}
	if res.Outcome == transform.Created || res.Outcome == transform.AlreadyExisted {
		resp.Width, resp.Height, resp.Quality, resp.Score = uint32(res.Width), uint32(res.Height), uint32(res.Spec.Quality), float32(res.Score)
	}
	return resp, nil
}

// Transform implements the streaming RPC of the same name.
func (s *Server) Transform(stream imgedgev1.ImageTransformService_TransformServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return s.fail(ctx, fmt.Errorf("%w: reading the options message: %w", transform.ErrInvalidArgument, err))
	}
	wanted, ok := first.GetPart().(*imgedgev1.TransformRequest_Variant)
	if !ok {
		return s.fail(ctx, fmt.Errorf("%w: the first message must carry the variant", transform.ErrInvalidArgument))
	}
	v, err := variant.FromProto(wanted.Variant)
	if err != nil {
		return s.fail(ctx, err)
	}
	req := transform.Request{Variant: v}
	// Admit the call before reading its input: a full service refuses it
	// now, and the bytes it then receives count against the memory budget.
	up, err := s.svc.StartTransform(req)
	if err != nil {
		return s.fail(ctx, err)
	}
	defer up.Close()
	data, err := receiveImage(ctx, stream, up)
	if err != nil {
		return s.fail(ctx, err)
	}
	setLogAttrs(ctx, slog.Int("input_bytes", len(data)))
	out, spec, err := up.Transform(ctx, data)
	if err != nil {
		return s.fail(ctx, err)
	}
	setLogAttrs(ctx, slog.Int("output_bytes", len(out.Data)))
	if err := stream.Send(&imgedgev1.TransformResponse{Part: &imgedgev1.TransformResponse_Result{Result: &imgedgev1.TransformResult{
		ContentType: spec.Format.ContentType(),
		Size:        int64(len(out.Data)),
		Width:       uint32(out.Width),
		Height:      uint32(out.Height),
		Format:      imgedgev1.Format(spec.Format),
		Quality:     uint32(spec.Quality),
		Score:       float32(out.Score),
	}}}); err != nil {
		return err
	}
	for rest := out.Data; len(rest) > 0; {
		n := min(len(rest), s.opts.ChunkSize)
		if err := stream.Send(&imgedgev1.TransformResponse{Part: &imgedgev1.TransformResponse_Chunk{Chunk: rest[:n]}}); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// Backfill implements the server-streaming RPC of the same name.
func (s *Server) Backfill(in *imgedgev1.BackfillRequest, stream imgedgev1.ImageTransformService_BackfillServer) error {
	ctx := stream.Context()
	v, err := variant.FromProto(in.GetVariant())
	if err != nil {
		return s.fail(ctx, err)
	}
	req := transform.Request{Variant: v, DryRun: in.GetDryRun()}
	setLogAttrs(ctx, slog.String("bucket", in.GetBucket()), slog.String("prefix", in.GetPrefix()), slog.Bool("dry_run", req.DryRun))
	sum, err := s.svc.Backfill(ctx, in.GetBucket(), in.GetPrefix(), req, int(in.GetConcurrency()), func(it transform.BackfillItem) error {
		p := &imgedgev1.BackfillProgress{Key: it.Key, OriginalSize: it.OriginalSize, VariantKey: it.Result.VariantKey,
			Total: it.Total, TotalFinal: it.TotalFinal}
		if it.Err != nil {
			st := status.Convert(s.fail(ctx, it.Err)) // an internal error is logged in full
			p.ErrorCode, p.Error = st.Code().String(), st.Message()
		} else {
			p.Outcome = outcomeToProto(it.Result.Outcome)
			p.OriginalSize = it.Result.OriginalSize
			if it.Result.Outcome != transform.OriginalIsSmaller && it.Result.Outcome != transform.OriginalKept {
				p.VariantSize = it.Result.Size
			}
		}
		return stream.Send(&imgedgev1.BackfillResponse{Event: &imgedgev1.BackfillResponse_Progress{Progress: p}})
	})
	if err != nil {
		return s.fail(ctx, err)
	}
	setLogAttrs(ctx, slog.Int64("objects", sum.Objects), slog.Int64("errors", sum.Errors),
		slog.Int64("original_bytes", sum.OriginalBytes), slog.Int64("served_bytes", sum.ServedBytes))
	return stream.Send(&imgedgev1.BackfillResponse{Event: &imgedgev1.BackfillResponse_Summary{Summary: &imgedgev1.BackfillSummary{
		Objects: sum.Objects, Created: sum.Created, AlreadyExisted: sum.AlreadyExisted, OriginalIsSmaller: sum.OriginalIsSmaller, OriginalKept: sum.OriginalKept,
		Errors: sum.Errors, Skipped: sum.Skipped, OriginalBytes: sum.OriginalBytes, ServedBytes: sum.ServedBytes,
		VariantBytes: sum.VariantBytes, DryRun: req.DryRun,
	}}})
}

// receiveImage collects the chunks of a Transform stream, accounting for
// each before it is kept, and joins them once at the end (growing one
// buffer as chunks arrive would leave twice the input behind as garbage).
//
// It gives up when ctx is done, which the call timeout bounds: a stream's
// Recv waits for the caller alone, so a caller that stops sending midway
// (a client with no deadline whose own source stalled) would otherwise
// hold its place in the pool, and the memory of what it sent, for as long
// as its connection lives. The receiving goroutine ends with the stream,
// once the handler has returned.
func receiveImage(ctx context.Context, stream imgedgev1.ImageTransformService_TransformServer, up *transform.Upload) ([]byte, error) {
	type received struct {
		msg *imgedgev1.TransformRequest
		err error
	}
	next := make(chan received)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			msg, err := stream.Recv()
			select {
			case next <- received{msg, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var chunks [][]byte
	for {
		var r received
		select {
		case r = <-next:
		case <-ctx.Done():
			return nil, fmt.Errorf("receiving the image (%d bytes so far): %w", up.Received(), context.Cause(ctx))
		}
		if errors.Is(r.err, io.EOF) {
			return bytes.Join(chunks, nil), nil
		}
		if r.err != nil {
			return nil, r.err
		}
		chunk, ok := r.msg.GetPart().(*imgedgev1.TransformRequest_Chunk)
		if !ok {
			return nil, fmt.Errorf("%w: only the first message may carry the variant", transform.ErrInvalidArgument)
		}
		if err := up.Receive(len(chunk.Chunk)); err != nil {
			return nil, err
		}
		chunks = append(chunks, chunk.Chunk)
	}
}

// fail converts err to a status, logging internal errors in full (their
// detail is not sent to the caller).
func (s *Server) fail(ctx context.Context, err error) error {
	st := toStatus(err)
	if status.Code(st) == codes.Internal {
		s.opts.Logger.ErrorContext(ctx, "internal error", slog.String("error", err.Error()))
	}
	return st
}

func outcomeToProto(o transform.Outcome) imgedgev1.Outcome {
	switch o {
	case transform.Created:
		return imgedgev1.Outcome_OUTCOME_CREATED
	case transform.AlreadyExisted:
		return imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED
	case transform.OriginalIsSmaller:
		return imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER
	case transform.Pending:
		return imgedgev1.Outcome_OUTCOME_PENDING
	case transform.OriginalKept:
		return imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT
	}
	return imgedgev1.Outcome_OUTCOME_UNSPECIFIED
}
