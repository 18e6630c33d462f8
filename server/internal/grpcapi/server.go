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
	req, err := toRequest(variantFields{
		preset: in.GetPreset(), width: in.Width, height: in.Height, quality: in.Quality,
		fit: in.GetFit(), format: in.GetFormat(), progressive: in.GetProgressive(), accept: in.GetAccept(), autoQuality: in.GetAutoQuality(),
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
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
		resp.Width, resp.Height, resp.Quality = uint32(res.Width), uint32(res.Height), uint32(res.Spec.Quality)
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
	o := first.GetOptions()
	if o == nil {
		return s.fail(ctx, fmt.Errorf("%w: the first message must carry options", transform.ErrInvalidArgument))
	}
	req, err := toRequest(variantFields{
		preset: o.GetPreset(), width: o.Width, height: o.Height, quality: o.Quality,
		fit: o.GetFit(), format: o.GetFormat(), progressive: o.GetProgressive(), accept: o.GetAccept(), autoQuality: o.GetAutoQuality(),
	})
	if err != nil {
		return s.fail(ctx, err)
	}
	// Admit the call before reading its input: a full service refuses it
	// now, and the bytes it then receives count against the memory budget.
	up, err := s.svc.StartTransform(req)
	if err != nil {
		return s.fail(ctx, err)
	}
	defer up.Close()
	data, err := receiveImage(stream, up)
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
	req, err := toRequest(variantFields{
		preset: in.GetPreset(), width: in.Width, height: in.Height, quality: in.Quality,
		fit: in.GetFit(), format: in.GetFormat(), progressive: in.GetProgressive(), accept: in.GetAccept(), autoQuality: in.GetAutoQuality(),
	})
	if err != nil {
		return s.fail(ctx, err)
	}
	req.DryRun = in.GetDryRun()
	setLogAttrs(ctx, slog.String("bucket", in.GetBucket()), slog.String("prefix", in.GetPrefix()), slog.Bool("dry_run", req.DryRun))
	sum, err := s.svc.Backfill(ctx, in.GetBucket(), in.GetPrefix(), req, int(in.GetConcurrency()), func(it transform.BackfillItem) error {
		p := &imgedgev1.BackfillProgress{Key: it.Key, OriginalSize: it.OriginalSize, VariantKey: it.Result.VariantKey,
			Total: it.Total, TotalFinal: it.TotalFinal}
		if it.Err != nil {
			p.ErrorCode = Code(it.Err).String()
			p.Error = status.Convert(toStatus(it.Err)).Message()
		} else {
			p.Outcome = outcomeToProto(it.Result.Outcome)
			p.OriginalSize = it.Result.OriginalSize
			if it.Result.Outcome != transform.OriginalIsSmaller {
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
		Objects: sum.Objects, Created: sum.Created, AlreadyExisted: sum.AlreadyExisted, OriginalIsSmaller: sum.OriginalIsSmaller,
		Errors: sum.Errors, Skipped: sum.Skipped, OriginalBytes: sum.OriginalBytes, ServedBytes: sum.ServedBytes,
		VariantBytes: sum.VariantBytes, DryRun: req.DryRun,
	}}})
}

// receiveImage collects the chunks of a Transform stream, accounting for
// each before it is kept, and joins them once at the end (growing one
// buffer as chunks arrive would leave twice the input behind as garbage).
func receiveImage(stream imgedgev1.ImageTransformService_TransformServer, up *transform.Upload) ([]byte, error) {
	var chunks [][]byte
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return bytes.Join(chunks, nil), nil
		}
		if err != nil {
			return nil, err
		}
		chunk, ok := msg.GetPart().(*imgedgev1.TransformRequest_Chunk)
		if !ok {
			return nil, fmt.Errorf("%w: only the first message may carry options", transform.ErrInvalidArgument)
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

// variantFields are the variant fields shared by EnsureVariantRequest and
// TransformOptions.
type variantFields struct {
	preset                 string
	width, height, quality *uint32
	fit                    imgedgev1.Fit
	format                 imgedgev1.Format
	progressive            bool
	accept                 string
	autoQuality            bool
}

// toRequest validates the wire fields and builds a domain request. Absent
// optional fields defer to the preset; present ones must be in range.
func toRequest(f variantFields) (transform.Request, error) {
	var errs []error
	dim := func(name string, v *uint32) int {
		if v == nil {
			return 0
		}
		if *v == 0 || *v > 1<<20 {
			errs = append(errs, fmt.Errorf("%s %d is out of range: give a positive number of pixels, or leave it out to use the preset's", name, *v))
			return 0
		}
		return int(*v)
	}
	spec := variant.Spec{Width: dim("width", f.width), Height: dim("height", f.height), Progressive: f.progressive, AutoQuality: f.autoQuality}
	if f.quality != nil {
		if *f.quality < 1 || *f.quality > 100 {
			errs = append(errs, fmt.Errorf("quality %d is out of range (1–100)", *f.quality))
		} else {
			spec.Quality = int(*f.quality)
		}
	}
	if _, ok := imgedgev1.Fit_name[int32(f.fit)]; !ok {
		errs = append(errs, fmt.Errorf("unknown fit %d", f.fit))
	}
	spec.Fit = variant.Fit(f.fit)
	if _, ok := imgedgev1.Format_name[int32(f.format)]; !ok {
		errs = append(errs, fmt.Errorf("unknown format %d", f.format))
	}
	spec.Format = variant.Format(f.format)
	if len(errs) > 0 {
		return transform.Request{}, fmt.Errorf("%w: %w", transform.ErrInvalidArgument, errors.Join(errs...))
	}
	return transform.Request{Preset: f.preset, Override: spec, Accept: f.accept}, nil
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
	}
	return imgedgev1.Outcome_OUTCOME_UNSPECIFIED
}
