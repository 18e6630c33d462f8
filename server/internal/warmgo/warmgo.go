// Package warmgo runs short functions on goroutines that are kept between
// calls, so that their stacks have already grown to what the functions need.
//
// A goroutine starts with a small stack and copies it, doubling it each
// time, when a call chain outgrows it. The S3 SDK's HEAD goes through some
// fifty middleware frames: on a fresh goroutine per lookup, growing the
// stack for it took 15 % of a hot hit's CPU. A kept goroutine grows once
// (again after the garbage collector has shrunk an idle one's stack).
package warmgo

import (
	"sync/atomic"
	"time"
)

// Pool runs functions on a bounded number of kept goroutines; a call that
// finds them all busy runs on a goroutine of its own, so Go never waits
// for a free one.
type Pool struct {
	jobs    chan func()
	idle    time.Duration
	limit   int32
	running atomic.Int32
}

// New returns a pool that keeps at most limit goroutines, each ending
// after idle without work.
func New(limit int, idle time.Duration) *Pool {
	return &Pool{jobs: make(chan func()), idle: idle, limit: int32(limit)}
}

// Go runs f on another goroutine and returns at once: an idle kept
// goroutine's, a new kept one's while fewer than the limit exist, else a
// new goroutine that ends with f.
func (p *Pool) Go(f func()) {
	select {
	case p.jobs <- f:
		return
	default:
	}
	if p.running.Add(1) <= p.limit {
		go p.keep(f)
		return
	}
	p.running.Add(-1)
	go f()
}

// keep runs f, then whatever Go hands it, until it has waited idle.
func (p *Pool) keep(f func()) {
	defer p.running.Add(-1)
	timer := time.NewTimer(p.idle)
	defer timer.Stop()
	for {
		f()
		timer.Reset(p.idle)
		select {
		case f = <-p.jobs:
		case <-timer.C:
			return
		}
	}
}

// kept reports how many kept goroutines exist.
func (p *Pool) kept() int { return int(p.running.Load()) }
