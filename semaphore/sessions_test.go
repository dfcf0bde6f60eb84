package semaphore_test

import (
	"context"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// With lock sessions (WithSlotOptions), held slots cost no pooled connection,
// and a waiter still takes a slot released by another process.
func TestSlotOptions_lockSessions(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	pool := newPool(t, dsn)
	s := semaphore.New(pool, "sessions", 3)
	var held []*advisorylock.Lock
	for range 3 {
		held = append(held, mustLock(t, s))
	}
	awaitAcquired(t, pool, 0)
	ch := lockAsync(t, t.Context(), semaphore.New(newPool(t, dsn), "sessions", 3))
	awaitQueued(t, admin, s, 1)
	release(t, held[1])
	r := await(t, ch, awaitTimeout, "waiter")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := s.Slot(r.l), s.Slot(held[1]); got != -1 || want == -1 {
		// The waiter's Semaphore is another one: its locks are not s's.
		t.Errorf("s.Slot(another semaphore's lock) = %d; want -1", got)
	}
	release(t, r.l)
	_, err := advisorylock.WithLock(t.Context(), s, func(context.Context) (int, error) { return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
}
