package app

import (
	"context"
	"testing"
	"time"
)

// TestABurstIsOverOnceThePoolIsQuietForAWholeTick feeds idleness the pool's
// state tick by tick and checks at which ticks memory is freed.
func TestABurstIsOverOnceThePoolIsQuietForAWholeTick(t *testing.T) {
	type tick struct {
		admitted int
		finished uint64
		over     bool
	}
	for _, tc := range []struct {
		name  string
		ticks []tick
	}{
		{"nothing ever ran", []tick{{0, 0, false}, {0, 0, false}, {0, 0, false}}},
		{"a burst, then quiet for a whole tick", []tick{{2, 0, false}, {1, 3, false}, {0, 5, false}, {0, 5, true}, {0, 5, false}, {0, 5, false}}},
		{"jobs that ran between two ticks", []tick{{0, 1, false}, {0, 1, true}}},
		{"a job still admitted", []tick{{0, 1, false}, {1, 1, false}, {1, 1, false}, {0, 2, false}, {0, 2, true}}},
		{"a long job while the count stands", []tick{{1, 4, false}, {1, 4, false}, {0, 5, false}, {0, 5, true}}},
		{"two bursts, two frees", []tick{{0, 2, false}, {0, 2, true}, {2, 2, false}, {0, 4, false}, {0, 4, true}, {0, 4, false}}},
		{"steady work never frees", []tick{{1, 1, false}, {0, 2, false}, {0, 3, false}, {1, 4, false}, {0, 5, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var idle idleness
			for i, tk := range tc.ticks {
				if got := idle.tick(tk.admitted, tk.finished); got != tk.over {
					t.Fatalf("tick %d (%d admitted, %d finished): over %v, want %v", i, tk.admitted, tk.finished, got, tk.over)
				}
			}
		})
	}
}

// pool is a poolActivity with one finished job and none admitted.
type pool struct{}

func (pool) Admitted() int    { return 0 }
func (pool) Finished() uint64 { return 1 }

// TestFreeWhenIdleFreesOnItsTicksUntilCancelled: the loop reads the pool
// at each tick, frees when a burst is over, and returns when ctx ends.
func TestFreeWhenIdleFreesOnItsTicksUntilCancelled(t *testing.T) {
	ticks := make(chan time.Time)
	freed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		freeWhenIdle(ctx, pool{}, ticks, func() { freed <- struct{}{} })
		close(done)
	}()
	ticks <- time.Time{} // sees the job finished
	ticks <- time.Time{} // quiet since: frees
	<-freed
	ticks <- time.Time{} // nothing new: does not free again
	cancel()
	<-done
	select {
	case <-freed:
		t.Error("freed twice for one burst")
	default:
	}
}
