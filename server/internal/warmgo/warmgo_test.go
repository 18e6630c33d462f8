package warmgo

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// goroutineID tells goroutines apart for the test: the number after
// "goroutine " in the first line of the stack.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	for i := len("goroutine "); i < len(buf); i++ {
		if buf[i] == ' ' {
			return string(buf[len("goroutine "):i])
		}
	}
	return string(buf)
}

func TestSequentialCallsReuseOneGoroutine(t *testing.T) {
	p := New(1, time.Minute)
	const calls = 20
	ran := map[string]int{}
	for range calls {
		done := make(chan string)
		p.Go(func() { done <- goroutineID() })
		ran[<-done]++
		// Time for the kept goroutine to get back to waiting for work; a
		// call that comes too soon runs on a goroutine of its own.
		time.Sleep(2 * time.Millisecond)
	}
	most := 0
	for _, n := range ran {
		most = max(most, n)
	}
	if most < calls*3/4 {
		t.Errorf("%d calls one after another ran on %d goroutines, at most %d on one; want one goroutine for nearly all", calls, len(ran), most)
	}
}

func TestBusyPoolNeverWaits(t *testing.T) {
	tests := []struct {
		name            string
		limit, parallel int
		wantKept        int
	}{
		{"fewer calls than kept goroutines", 4, 2, 2},
		{"as many", 4, 4, 4},
		{"more: the rest run on their own goroutines", 4, 10, 4},
		{"no kept goroutines", 0, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(tt.limit, time.Minute)
			release := make(chan struct{})
			var started, finished sync.WaitGroup
			started.Add(tt.parallel)
			finished.Add(tt.parallel)
			for range tt.parallel {
				p.Go(func() {
					started.Done()
					<-release
					finished.Done()
				})
			}
			// Every call runs at once, however many are kept: none waits
			// for another to finish.
			started.Wait()
			if got := p.kept(); got != tt.wantKept {
				t.Errorf("kept goroutines: %d, want %d", got, tt.wantKept)
			}
			close(release)
			finished.Wait()
		})
	}
}

func TestIdleGoroutinesEnd(t *testing.T) {
	p := New(3, 20*time.Millisecond)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		p.Go(wg.Done)
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for p.kept() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := p.kept(); n != 0 {
		t.Fatalf("%d kept goroutines after their idle time, want 0", n)
	}
	// The pool still works after its goroutines ended.
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
}
