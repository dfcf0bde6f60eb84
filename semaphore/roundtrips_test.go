package semaphore_test

import (
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"

	"github.com/advisorylock/advisorylock/semaphore"
)

// The round trips of the protocol, counted as writes to the server: an
// uncontended Lock is two (look, take), an Unlock two (unlock, announce). The
// head of the queue waits in the server on the slot held longest, which is
// granted to it when released: the hand-off costs it no round trip, and
// giving the queue up one, after Lock has returned. Between them the waiter
// sends nothing: it does not poll.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	var hw, ww writeCounter
	// Slots pinned to pooled connections, so that every round trip goes
	// through the pools' counting tracers (lock sessions are the package's).
	pin := semaphore.WithSlotOptions(advisorylock.PinConnection())
	holder := semaphore.New(newPool(t, dsn, hw.configure), "rt", 1, pin)
	wpool := newPool(t, dsn, ww.configure)
	waiter := semaphore.New(wpool, "rt", 1, semaphore.WithRecheck(time.Hour), pin)
	for i := range 3 { // the first pass prepares statements
		start := hw.n.Load()
		l, err := holder.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		locked := hw.n.Load()
		if err := l.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue
		}
		if got := locked - start; got != 2 {
			t.Errorf("uncontended Lock: %d round trips; want 2", got)
		}
		if got := hw.n.Load() - locked; got != 2 {
			t.Errorf("Unlock: %d round trips; want 2", got)
		}
	}
	for i := range 6 {
		l := mustLock(t, holder)
		ch := lockAsync(t, t.Context(), waiter)
		awaitQueued(t, admin, holder, 1)
		// The head has started listening, and looked: its session is idle;
		// and it waits in the server on the slot.
		awaitLocks(t, admin, "granted and "+keyCond(holder.QueueKey())+
			" and pid in (select pid from pg_stat_activity where state = 'idle' and query like 'listen %')", 1)
		awaitLocks(t, admin, "not granted and "+keyCond(holder.SlotKey(0)), 1)
		waiting := ww.n.Load()
		released := hw.n.Load()
		release(t, l)
		if got := hw.n.Load() - released; got != 2 {
			t.Errorf("Unlock with a waiter: %d round trips; want 2", got)
		}
		r := await(t, ch, awaitTimeout, "waiter")
		if r.err != nil {
			t.Fatal(r.err)
		}
		awaitAcquired(t, wpool, 1) // the slot's connection: the queue given up
		// The first passes prepare statements on the waiter's connections.
		if got := ww.n.Load() - waiting; i > 2 && got != 1 {
			t.Errorf("hand-off: the waiter made %d round trips after the release; want 1 (give the queue up)", got)
		}
		release(t, r.l)
	}
}
