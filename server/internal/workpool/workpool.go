// Package workpool bounds CPU-heavy work: at most Workers jobs run at once and
// at most Queue more wait for a slot. Anything beyond that is refused at once
// with ErrFull, so overload turns into fast, cheap rejections instead of an
// unbounded pile of goroutines and image buffers.
package workpool

import (
	"context"
	"errors"
	"sync/atomic"
)

// ErrFull is returned when every worker is busy and the wait queue is full.
var ErrFull = errors.New("all workers busy and the wait queue is full")

// Pool is a fail-fast worker semaphore with a bounded wait queue.
//
// Admission and running are separate, so a caller can hold its admission
// while it does I/O (fetching the source, storing the result) and hold a
// worker only while it uses the CPU: the number of jobs in memory stays
// bounded by workers + queue, and no worker idles on the network.
type Pool struct {
	admitted chan struct{} // workers + queue tokens: admission control
	running  chan struct{} // worker tokens
	waiting  atomic.Int64
}

// Ticket is an admitted job.
type Ticket struct {
	p    *Pool
	done atomic.Bool
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

// Release gives the job's place back. Call it once, after any Run's release.
func (t *Ticket) Release() {
	if t.done.CompareAndSwap(false, true) {
		<-t.p.admitted
	}
}

// New returns a pool of workers slots and a queue of queue waiting callers.
func New(workers, queue int) *Pool {
	workers = max(workers, 1)
	queue = max(queue, 0)
	return &Pool{
		admitted: make(chan struct{}, workers+queue),
		running:  make(chan struct{}, workers),
	}
}

// Acquire takes a worker slot, waiting in the queue if needed. It fails at
// once with ErrFull when the queue is full, and with ctx's error if ctx ends
// while waiting. Call release exactly once when the work is done.
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

// Waiting is the number of callers queued for a slot.
func (p *Pool) Waiting() int { return int(p.waiting.Load()) }

// Workers is the pool's number of worker slots.
func (p *Pool) Workers() int { return cap(p.running) }
