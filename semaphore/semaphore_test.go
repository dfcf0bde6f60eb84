package semaphore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// Goroutines on pools of their own (as processes would be) take and release
// slots at random; never more than N hold one at once, and every slot is used.
func TestLock_atMostN(t *testing.T) {
	t.Parallel()
	const n, workers, rounds = 3, 6, 15
	dsn := testDB(t)
	var holding, most atomic.Int32
	used := make([]atomic.Int32, n)
	var wg sync.WaitGroup
	for w := range workers {
		s := semaphore.New(newPool(t, dsn), "at-most-n", n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				_, err := advisorylock.WithLock(t.Context(), s, func(ctx context.Context) (struct{}, error) {
					l, _ := advisorylock.LockFromContext(ctx)
					used[s.Slot(l)].Add(1)
					now := holding.Add(1)
					for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
					}
					time.Sleep(time.Duration(w*r%5) * time.Millisecond)
					holding.Add(-1)
					return struct{}{}, nil
				})
				if err != nil {
					t.Errorf("worker %d round %d: %v", w, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > n {
		t.Errorf("%d holders at once; want at most %d", m, n)
	}
	for i := range used {
		if used[i].Load() == 0 {
			t.Errorf("slot %d never used", i)
		}
	}
}

// TryLock takes a free slot, and fails with ErrLocked once all are held.
func TestTryLock_busy(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	s := semaphore.New(newPool(t, dsn), "try", 2)
	seen := map[int]bool{}
	for range 2 {
		l, err := s.TryLock(t.Context())
		if err != nil {
			t.Fatalf("TryLock: %v", err)
		}
		t.Cleanup(func() { release(t, l) })
		seen[s.Slot(l)] = true
	}
	if !seen[0] || !seen[1] {
		t.Errorf("slots taken %v; want 0 and 1", seen)
	}
	_, err := s.TryLock(t.Context())
	if !errors.Is(err, advisorylock.ErrLocked) {
		t.Fatalf("TryLock with every slot held: %v; want ErrLocked", err)
	}
}

// A waiter waits in the server's queue and takes the slot its holder
// releases, without a recheck: the release is announced.
func TestLock_handoff(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	holder := semaphore.New(newPool(t, dsn), "handoff", 1)
	waiter := semaphore.New(newPool(t, dsn), "handoff", 1, semaphore.WithRecheck(time.Hour))
	l := mustLock(t, holder)
	ch := lockAsync(t, t.Context(), waiter)
	awaitQueued(t, admin, waiter, 1)
	notYet(t, ch, "waiter's Lock")
	release(t, l)
	r := await(t, ch, awaitTimeout, "waiter's Lock")
	if r.err != nil {
		t.Fatalf("waiter's Lock: %v", r.err)
	}
	if got := waiter.Slot(r.l); got != 0 {
		t.Errorf("slot %d; want 0", got)
	}
	release(t, r.l)
}

// A release the head does not wait on in the server is announced: with two
// slots held, the head waits on the older one, and takes the younger, which
// is released first, after its announcement; its wait on the older slot is
// given up, and that slot, released later, goes to the next waiter.
func TestLock_announcedHandoff(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	// Pinned, the holder's slots are on sessions of their own, which the
	// head tells apart by their last statement (on one lock session they
	// look alike).
	holder := semaphore.New(newPool(t, dsn), "announced", 2, semaphore.WithSlotOptions(advisorylock.PinConnection()))
	older := mustLock(t, holder)
	awaitLocks(t, admin, "granted", 1)
	younger := mustLock(t, holder)
	w1 := semaphore.New(newPool(t, dsn), "announced", 2, semaphore.WithRecheck(time.Hour))
	ch := lockAsync(t, t.Context(), w1)
	awaitQueued(t, admin, holder, 1)
	awaitLocks(t, admin, "not granted and "+keyCond(holder.SlotKey(holder.Slot(older))), 1)
	release(t, younger)
	r := await(t, ch, awaitTimeout, "waiter")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := w1.Slot(r.l), holder.Slot(younger); got != want {
		t.Errorf("waiter took slot %d; want %d, the one released", got, want)
	}
	// Its wait on the older slot is over.
	awaitLocks(t, admin, "not granted and "+keyCond(holder.SlotKey(holder.Slot(older))), 0)
	ch2 := lockAsync(t, t.Context(), semaphore.New(newPool(t, dsn), "announced", 2, semaphore.WithRecheck(time.Hour)))
	awaitQueued(t, admin, holder, 1)
	release(t, older)
	r2 := await(t, ch2, awaitTimeout, "second waiter")
	if r2.err != nil {
		t.Fatal(r2.err)
	}
	release(t, r.l)
	release(t, r2.l)
}
