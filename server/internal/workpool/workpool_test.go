package workpool

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPoolFailsFastWhenQueueIsFull(t *testing.T) {
	p := New(Limits{Workers: 2, Queue: 1})
	ctx := context.Background()
	r1, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.InFlight() != 2 {
		t.Fatalf("InFlight = %d, want 2", p.InFlight())
	}
	got := make(chan error, 1)
	go func() {
		r, err := p.Acquire(ctx) // queues
		if err == nil {
			r()
		}
		got <- err
	}()
	for p.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrFull) {
		t.Fatalf("Acquire over capacity = %v, want ErrFull", err)
	}
	r1()
	r1() // a second release is a no-op
	if err := <-got; err != nil {
		t.Fatalf("queued Acquire = %v", err)
	}
	r2()
	if p.InFlight() != 0 || p.Waiting() != 0 {
		t.Fatalf("after release: in flight %d, waiting %d", p.InFlight(), p.Waiting())
	}
}

func TestPoolQueuedCallerGivesUpWithContext(t *testing.T) {
	p := New(Limits{Workers: 1, Queue: 1})
	release, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want DeadlineExceeded", err)
	}
	// The abandoned waiter gave its queue place back.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := p.Acquire(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Acquire = %v, want DeadlineExceeded (queued, not ErrFull)", err)
	}
}

func TestAdmittedJobsHoldNoWorkerOutsideRun(t *testing.T) {
	p := New(Limits{Workers: 1, Queue: 1})
	a, err := p.Admit()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Admit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admit(); !errors.Is(err, ErrFull) {
		t.Fatalf("third admission: %v, want ErrFull", err)
	}
	// a does I/O without a worker; b can run meanwhile.
	stop, err := b.Run(context.Background())
	if err != nil || p.InFlight() != 1 {
		t.Fatalf("Run: %v, in flight %d", err, p.InFlight())
	}
	stop()
	stop()
	b.Release()
	stopA, err := a.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stopA()
	a.Release()
	a.Release()
	if p.InFlight() != 0 || p.Waiting() != 0 {
		t.Fatalf("after release: %d in flight, %d waiting", p.InFlight(), p.Waiting())
	}
	if _, err := p.Admit(); err != nil {
		t.Fatalf("admission after release: %v", err)
	}
}

func TestBufferBudgetFailsFast(t *testing.T) {
	p := New(Limits{Workers: 1, Queue: 4, BufferBytes: 100})
	a, _ := p.Admit()
	b, _ := p.Admit()
	if err := a.HoldBuffer(60); err != nil {
		t.Fatal(err)
	}
	if err := b.HoldBuffer(30); err != nil {
		t.Fatal(err)
	}
	if err := b.HoldBuffer(20); !errors.Is(err, ErrFull) {
		t.Fatalf("HoldBuffer past the budget = %v, want ErrFull", err)
	}
	if err := b.HoldBuffer(101); !errors.Is(err, ErrTooBig) {
		t.Fatalf("HoldBuffer over the whole budget = %v, want ErrTooBig", err)
	}
	if buf, _ := p.Held(); buf != 90 {
		t.Fatalf("Held buffers = %d, want 90", buf)
	}
	a.Release()
	if err := b.HoldBuffer(70); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	b.Release()
	b.Release() // a second release is a no-op
	if buf, px := p.Held(); buf != 0 || px != 0 {
		t.Fatalf("Held after release = %d, %d", buf, px)
	}
}

func TestPixelBudgetWaitsInOrder(t *testing.T) {
	p := New(Limits{Workers: 2, Queue: 2, PixelBytes: 100})
	ctx := context.Background()
	a, _ := p.Admit()
	if err := a.HoldPixels(ctx, 80); err != nil {
		t.Fatal(err)
	}
	b, _ := p.Admit()
	if err := b.HoldPixels(ctx, 101); !errors.Is(err, ErrTooBig) {
		t.Fatalf("HoldPixels over the whole budget = %v, want ErrTooBig", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.HoldPixels(ctx, 50) }()
	for p.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-got:
		t.Fatalf("HoldPixels did not wait: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	a.Release()
	if err := <-got; err != nil {
		t.Fatalf("HoldPixels after a release = %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	c, _ := p.Admit()
	if err := c.HoldPixels(short, 60); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("HoldPixels past its deadline = %v", err)
	}
	b.Release()
	c.Release()
	if _, px := p.Held(); px != 0 {
		t.Fatalf("pixels held after release: %d", px)
	}
}

// TestAdmittedAndFinishedCountJobs: Admitted counts tickets not yet
// released, whether waiting or running; Finished counts releases, once each.
func TestAdmittedAndFinishedCountJobs(t *testing.T) {
	p := New(Limits{Workers: 1, Queue: 2})
	if p.Admitted() != 0 || p.Finished() != 0 {
		t.Fatalf("new pool: %d admitted, %d finished", p.Admitted(), p.Finished())
	}
	running, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := p.Admit() // admitted, holds no worker
	if err != nil {
		t.Fatal(err)
	}
	if p.Admitted() != 2 || p.Finished() != 0 {
		t.Fatalf("two jobs in: %d admitted, %d finished", p.Admitted(), p.Finished())
	}
	running()
	waiting.Release()
	waiting.Release() // a second release is a no-op
	if p.Admitted() != 0 || p.Finished() != 2 {
		t.Fatalf("both released: %d admitted, %d finished, want 0 and 2", p.Admitted(), p.Finished())
	}
}
