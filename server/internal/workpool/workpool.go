// Package workpool bounds image work and the memory it holds: at most
// Workers jobs use the CPU at once, at most Queue more are admitted to wait,
// and two byte budgets bound what admitted jobs hold in memory. Anything
// beyond that is refused at once with ErrFull, so overload turns into fast,
// cheap rejections instead of an unbounded pile of goroutines and buffers.
//
// The two budgets are kept apart so that no job can wait while holding what
// another waits for. Buffers (compressed sources, uploads being received)
// are reserved without waiting: a full buffer budget refuses the job. Pixels
// (the decoded size of an image, known from its header) may be waited for,
// and once a job holds its pixels it needs only a worker, which jobs that
// already hold theirs give back.
package workpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

var (
	// ErrFull means every worker is busy and the queue is full, or the buffer
	// budget is spent. Retrying later helps.
	ErrFull = errors.New("all workers busy and the wait queue is full")
	// ErrTooBig means one job needs more than a whole budget. Retrying never helps.
	ErrTooBig = errors.New("larger than the memory budget")
)

// Limits size a pool.
type Limits struct {
	Workers int // jobs using the CPU at once
	Queue   int // admitted jobs waiting for a worker
	// BufferBytes bounds the compressed bytes admitted jobs hold at once.
	BufferBytes int64
	// PixelBytes bounds the decoded pixels admitted jobs hold at once.
	PixelBytes int64
}

// Pool is a fail-fast worker semaphore with a bounded wait queue and
// memory budgets.
//
// Admission and running are separate, so a caller can hold its admission
// while it does I/O (fetching the source, storing the result) and hold a
// worker only while it uses the CPU: the number of jobs in memory stays
// bounded by workers + queue, and no worker idles on the network.
type Pool struct {
	limits   Limits
	admitted chan struct{} // workers + queue tokens: admission control
	running  chan struct{} // worker tokens
	waiting  atomic.Int64
	finished atomic.Uint64 // jobs released, ever
	buffers  *semaphore.Weighted
	pixels   *semaphore.Weighted
	held     [2]atomic.Int64 // bytes held: buffers, pixels
}

// New returns a pool. Budgets that are not positive are unlimited.
func New(l Limits) *Pool {
	l.Workers = max(l.Workers, 1)
	l.Queue = max(l.Queue, 0)
	unlimited := func(n int64) int64 {
		if n <= 0 {
			return 1 << 62
		}
		return n
	}
	l.BufferBytes, l.PixelBytes = unlimited(l.BufferBytes), unlimited(l.PixelBytes)
	return &Pool{
		limits:   l,
		admitted: make(chan struct{}, l.Workers+l.Queue),
		running:  make(chan struct{}, l.Workers),
		buffers:  semaphore.NewWeighted(l.BufferBytes),
		pixels:   semaphore.NewWeighted(l.PixelBytes),
	}
}

// Ticket is an admitted job.
type Ticket struct {
	p       *Pool
	mu      sync.Mutex
	done    bool
	buffers int64
	pixels  int64
}

// Admit reserves a place for a job, failing at once with ErrFull.
func (p *Pool) Admit() (*Ticket, error) {
	select {
	case p.admitted <- struct{}{}:
		return &Ticket{p: p}, nil
	default:
		return nil, ErrFull
	}
}

// HoldBuffer reserves n more bytes of the buffer budget for compressed data
// the job keeps in memory. It never waits: it fails with ErrFull when the
// budget is spent, and with ErrTooBig when n alone exceeds it.
func (t *Ticket) HoldBuffer(n int64) error {
	if n > t.p.limits.BufferBytes {
		return fmt.Errorf("%w: %d bytes to buffer, the budget is %d", ErrTooBig, n, t.p.limits.BufferBytes)
	}
	if n <= 0 {
		return nil
	}
	if !t.p.buffers.TryAcquire(n) {
		return fmt.Errorf("%w: the buffer budget of %d bytes is spent", ErrFull, t.p.limits.BufferBytes)
	}
	return t.add(n, 0)
}

// HoldPixels reserves n bytes of the pixel budget, waiting (in order of
// arrival) while other jobs hold it. It fails at once with ErrTooBig when n
// alone exceeds the budget, and with ctx's error if ctx ends first.
func (t *Ticket) HoldPixels(ctx context.Context, n int64) error {
	if n > t.p.limits.PixelBytes {
		return fmt.Errorf("%w: %d bytes of pixels, the budget is %d", ErrTooBig, n, t.p.limits.PixelBytes)
	}
	if n <= 0 {
		return nil
	}
	t.p.waiting.Add(1)
	err := t.p.pixels.Acquire(ctx, n)
	t.p.waiting.Add(-1)
	if err != nil {
		return err
	}
	return t.add(0, n)
}

// Affords says whether n bytes of pixels fit the whole pixel budget, that
// is, whether HoldPixels would take them (after a wait, perhaps) rather than
// refuse them with ErrTooBig.
func (t *Ticket) Affords(n int64) bool { return n <= t.p.limits.PixelBytes }

// PixelBudget is the most pixel memory one job may hold (Limits.PixelBytes).
func (p *Pool) PixelBudget() int64 { return p.limits.PixelBytes }

// DropPixels gives back the pixels the job holds, once its decoding is done.
func (t *Ticket) DropPixels() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done || t.pixels == 0 {
		return
	}
	t.p.giveBack(0, t.pixels)
	t.p.held[1].Add(-t.pixels)
	t.pixels = 0
}

// add records bytes held, giving them back at once if the ticket is
// already released.
func (t *Ticket) add(buffers, pixels int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		t.p.giveBack(buffers, pixels)
		return errors.New("workpool: ticket already released")
	}
	t.buffers += buffers
	t.pixels += pixels
	t.p.held[0].Add(buffers)
	t.p.held[1].Add(pixels)
	return nil
}

func (p *Pool) giveBack(buffers, pixels int64) {
	if buffers > 0 {
		p.buffers.Release(buffers)
	}
	if pixels > 0 {
		p.pixels.Release(pixels)
	}
}

// Run waits for a worker slot; call release when the CPU work is done.
// Run may be called again after release, for a second stint of work.
func (t *Ticket) Run(ctx context.Context) (release func(), err error) {
	t.p.waiting.Add(1)
	defer t.p.waiting.Add(-1)
	select {
	case t.p.running <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			<-t.p.running
		}
	}, nil
}

// Release gives the job's place and memory back. Call it after any Run's
// release; later calls do nothing.
func (t *Ticket) Release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	t.p.giveBack(t.buffers, t.pixels)
	t.p.held[0].Add(-t.buffers)
	t.p.held[1].Add(-t.pixels)
	<-t.p.admitted
	t.p.finished.Add(1)
}

// Acquire admits a job and takes a worker slot, waiting in the queue if
// needed. It fails at once with ErrFull when the queue is full, and with
// ctx's error if ctx ends while waiting. Call release exactly once when the
// work is done.
func (p *Pool) Acquire(ctx context.Context) (release func(), err error) {
	t, err := p.Admit()
	if err != nil {
		return nil, err
	}
	stop, err := t.Run(ctx)
	if err != nil {
		t.Release()
		return nil, err
	}
	return func() { stop(); t.Release() }, nil
}

// InFlight is the number of jobs holding a worker slot.
func (p *Pool) InFlight() int { return len(p.running) }

// Waiting is the number of callers queued for a worker slot or pixels.
func (p *Pool) Waiting() int { return int(p.waiting.Load()) }

// Admitted is the number of jobs admitted and not yet released.
func (p *Pool) Admitted() int { return len(p.admitted) }

// Finished is the number of jobs released since the pool was made.
func (p *Pool) Finished() uint64 { return p.finished.Load() }

// Workers is the pool's number of worker slots.
func (p *Pool) Workers() int { return cap(p.running) }

// Held reports the bytes admitted jobs hold: buffers and pixels.
func (p *Pool) Held() (buffers, pixels int64) { return p.held[0].Load(), p.held[1].Load() }
