package transform

import (
	"cmp"
	"context"
	"fmt"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// Upload is an admitted Transform: its input is received chunk by chunk
// against the memory budget, then transformed. Close it when done.
type Upload struct {
	s      *Service
	req    Request
	ch     choices
	ticket *workpool.Ticket
	size   int64
}

// StartTransform validates req and admits a Transform before any of its
// input is read, so that a full service refuses it at the first message.
func (s *Service) StartTransform(req Request) (*Upload, error) {
	ch, err := s.cfg.resolve(req.Variant)
	if err != nil {
		return nil, err
	}
	ch.fallbacks = s.cfg.fallbacksOf(req.Variant)
	if req.Variant.Viewer == variant.ClassAVIF {
		// The format left to the service is AVIF, which keeps no frames:
		// an animation is answered as for a WebP viewer, as EnsureVariant
		// answers for a GIF key.
		asWebP := req.Variant
		asWebP.Viewer = variant.ClassWebP
		if alt, err := s.cfg.resolve(asWebP); err == nil {
			ch.forAnimation = alt.specs
		}
	}
	ticket, err := s.admit()
	if err != nil {
		return nil, err
	}
	return &Upload{s: s, req: req, ch: ch, ticket: ticket}, nil
}

// Receive accounts for n more input bytes about to be held in memory. It
// fails with ErrTooLarge past the source limit, and with ErrOverloaded when
// the service's buffer budget is spent.
func (u *Upload) Receive(n int) error {
	u.size += int64(n)
	if limit := u.s.MaxStreamBytes(); u.size > limit {
		return fmt.Errorf("%w: the input exceeds the stream limit of %d bytes", ErrTooLarge, limit)
	}
	return u.s.holdBuffer(u.ticket, int64(n))
}

// Received is how many input bytes Receive has accounted for.
func (u *Upload) Received() int64 { return u.size }

// Transform converts the received bytes, which must be all of them.
func (u *Upload) Transform(ctx context.Context, data []byte) (Output, variant.Spec, error) {
	s, first := u.s, u.ch.specs[0]
	if int64(len(data)) != u.size {
		return Output{}, first, fmt.Errorf("transform: %d bytes received, %d accounted for", len(data), u.size)
	}
	// Transform always answers with an image: the search runs whatever
	// the source's quality.
	out, chosen, err := s.work(ctx, u.ticket, data, u.ch, false)
	if err != nil {
		return Output{}, first, err
	}
	return out, chosen, nil
}

// Close gives the upload's place and memory back.
func (u *Upload) Close() { u.ticket.Release() }

// Transform converts image bytes without touching storage: StartTransform,
// Receive and Transform in one call, for callers that hold the bytes.
func (s *Service) Transform(ctx context.Context, data []byte, req Request) (Output, variant.Spec, error) {
	up, err := s.StartTransform(req)
	if err != nil {
		return Output{}, variant.Spec{}, err
	}
	defer up.Close()
	if err := up.Receive(len(data)); err != nil {
		return Output{}, up.ch.specs[0], err
	}
	return up.Transform(ctx, data)
}

// MaxStreamBytes is the largest input Transform accepts.
func (s *Service) MaxStreamBytes() int64 {
	return cmp.Or(min(s.cfg.Limits.MaxStreamBytes, s.cfg.Limits.MaxSourceBytes), s.cfg.Limits.MaxSourceBytes)
}
