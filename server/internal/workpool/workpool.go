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
type Pool struct {
	admitted chan struct{} // workers + queue tokens: admission control
	running  chan struct{} // worker tokens
	waiting  atomic.Int64
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
	select {
	case p.admitted <- struct{}{}:
	default:
		return nil, ErrFull
	}
	p.waiting.Add(1)
	select {
	case p.running <- struct{}{}:
		p.waiting.Add(-1)
	case <-ctx.Done():
		p.waiting.Add(-1)
		<-p.admitted
		return nil, ctx.Err()
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			<-p.running
			<-p.admitted
		}
	}, nil
}

// InFlight is the number of jobs holding a worker slot.
func (p *Pool) InFlight() int { return len(p.running) }

// Waiting is the number of callers queued for a slot.
func (p *Pool) Waiting() int { return int(p.waiting.Load()) }

// Workers is the pool's number of worker slots.
func (p *Pool) Workers() int { return cap(p.running) }
