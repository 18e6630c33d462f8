package app

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/imgedge/imgedge/server/internal/imaging"
)

// poolActivity is what freeing idle memory reads from the worker pool.
type poolActivity interface {
	Admitted() int    // jobs admitted and not yet released
	Finished() uint64 // jobs released, ever
}

// FreeMemoryWhenIdle gives the memory image work freed back to the
// operating system once the worker pool has been idle for a whole interval
// after it last finished a job, until ctx ends (interval 0: never).
//
// A burst of image work leaves the process holding what it freed: Go
// garbage the collector has not met yet (at GOGC 400 the heap may grow to
// five times what is live before it runs) and the pages libvips freed into
// glibc's arenas, which glibc keeps for the next allocation. Idle, nothing
// gives them back: after a burst of auto-quality searches the process sat
// at 574 MB of RSS, unchanged over two minutes. Freeing costs a collection
// and a walk of the arenas, so it runs once per burst, after the pool has
// gone quiet, never between jobs.
func (s *Server) FreeMemoryWhenIdle(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	if interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	freeWhenIdle(ctx, s.pool, ticker.C, func() {
		start := time.Now()
		freeMemory()
		logger.Debug("gave idle memory back", slog.Duration("took", time.Since(start)))
	})
}

// freeMemory returns the Go heap's garbage and glibc's free pages.
func freeMemory() {
	debug.FreeOSMemory()
	imaging.TrimMalloc()
}

// freeWhenIdle calls free on every tick at which idleness says to.
func freeWhenIdle(ctx context.Context, pool poolActivity, ticks <-chan time.Time, free func()) {
	var idle idleness
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		if idle.tick(pool.Admitted(), pool.Finished()) {
			free()
		}
	}
}

// idleness tells, tick by tick, when a burst of jobs is over: at a tick
// that finds no job admitted and none finished since the tick before, if
// any finished since the last such tick.
type idleness struct {
	seen    uint64 // jobs finished at the last tick
	freedAt uint64 // jobs finished when the last burst was over
}

// tick takes the pool's state at a tick and says whether a burst just ended.
func (i *idleness) tick(admitted int, finished uint64) (over bool) {
	over = admitted == 0 && finished == i.seen && finished != i.freedAt
	if over {
		i.freedAt = finished
	}
	i.seen = finished
	return over
}
