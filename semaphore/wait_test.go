package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/semaphore"
)

// Waiters from different processes are served in the order they came: each
// queues in the server behind the ones before it.
func TestLock_arrivalOrder(t *testing.T) {
	t.Parallel()
	const waiters = 5
	dsn := testDB(t)
	admin := newPool(t, dsn)
	open := func() *semaphore.Semaphore {
		return semaphore.New(newPool(t, dsn), "order", 2, semaphore.WithRecheck(time.Hour))
	}
	first := open()
	held := []*advisorylock.Lock{mustLock(t, first), mustLock(t, first)}
	var chans []<-chan lockResult
	for i := range waiters {
		chans = append(chans, lockAsync(t, t.Context(), open()))
		awaitQueued(t, admin, first, i+1)
	}
	// Each release lets the longest waiter in; it releases in turn.
	release(t, held[0])
	for i, ch := range chans {
		r := await(t, ch, awaitTimeout, fmt.Sprintf("waiter %d", i))
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		for j := i + 1; j < len(chans); j++ {
			notYet(t, chans[j], fmt.Sprintf("waiter %d, after waiter %d's turn", j, i))
		}
		release(t, r.l)
	}
	release(t, held[1])
}

// No slot stays free while someone waits: two slots freed at once go to the
// two waiters, the second found by the next head's look, not by a recheck.
func TestLock_noIdleSlot(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	holder := semaphore.New(newPool(t, dsn), "no-idle", 2)
	a, b := mustLock(t, holder), mustLock(t, holder)
	w1 := lockAsync(t, t.Context(), semaphore.New(newPool(t, dsn), "no-idle", 2, semaphore.WithRecheck(time.Hour)))
	awaitQueued(t, admin, holder, 1)
	w2 := lockAsync(t, t.Context(), semaphore.New(newPool(t, dsn), "no-idle", 2, semaphore.WithRecheck(time.Hour)))
	awaitQueued(t, admin, holder, 2)
	release(t, a)
	release(t, b)
	for i, ch := range []<-chan lockResult{w1, w2} {
		if r := await(t, ch, awaitTimeout, fmt.Sprintf("waiter %d", i+1)); r.err != nil {
			t.Fatalf("waiter %d: %v", i+1, r.err)
		} else {
			release(t, r.l)
		}
	}
}

// A slot whose holder's session is terminated is announced free by the
// holder's process, which notices the loss: the waiter takes it without a
// recheck. The holder's Lock reports the loss.
func TestLock_terminatedHolderAnnounced(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	holder := semaphore.New(newPool(t, dsn), "terminated", 1)
	l := mustLock(t, holder)
	ch := lockAsync(t, t.Context(), semaphore.New(newPool(t, dsn), "terminated", 1, semaphore.WithRecheck(time.Hour)))
	awaitQueued(t, admin, holder, 1)
	pgtest.Terminate(t, admin, l.PID())
	await(t, l.Done(), awaitTimeout, "the holder's Done")
	if err := l.Err(); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("holder's Err = %v; want ErrLockLost", err)
	}
	r := await(t, ch, awaitTimeout, "waiter")
	if r.err != nil {
		t.Fatalf("waiter: %v", r.err)
	}
	release(t, r.l)
}

// A slot freed by a session that died unannounced (here a raw session on the
// slot's key, terminated) is found by the head's recheck.
func TestLock_deadHolderFoundByRecheck(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	s := semaphore.New(newPool(t, dsn), "dead", 1, semaphore.WithRecheck(50*time.Millisecond))
	k, _ := s.SlotKey(0).Int64()
	raw := pgtest.Connect(t, dsn)
	if _, err := raw.Exec(t.Context(), "select pg_advisory_lock($1::int8)", k); err != nil {
		t.Fatal(err)
	}
	ch := lockAsync(t, t.Context(), s)
	awaitQueued(t, admin, s, 1)
	notYet(t, ch, "waiter")
	pgtest.Terminate(t, admin, int32(raw.PgConn().PID()))
	r := await(t, ch, awaitTimeout, "waiter")
	if r.err != nil {
		t.Fatalf("waiter: %v", r.err)
	}
	release(t, r.l)
}

// A head whose network goes silent holds the queue up for its lease only:
// the server ends its session, and the next waiter takes a slot released
// while the first is still cut off. The frozen head's wait in the server on
// the slot held longest ends too (lock_timeout), so that slot, released, goes
// to the next waiter as well. The first queues again once its network is
// back.
func TestLock_frozenHeadLease(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	dsn := testDB(t)
	admin := newPool(t, dsn)
	// Pinned: the head tells the holder's slots apart (see
	// TestLock_announcedHandoff).
	holder := semaphore.New(newPool(t, dsn), "lease", 2, semaphore.WithSlotOptions(advisorylock.PinConnection()))
	older := mustLock(t, holder)
	awaitLocks(t, admin, "granted", 1)
	younger := mustLock(t, holder)
	proxy, frozenPool := srv.ProxiedPool(t, dsn)
	frozen := lockAsync(t, t.Context(), semaphore.New(frozenPool, "lease", 2, semaphore.WithRecheck(100*time.Millisecond)))
	awaitQueued(t, admin, holder, 1)
	// The head waits in the server on the slot held longest.
	awaitLocks(t, admin, "not granted and "+keyCond(holder.SlotKey(holder.Slot(older))), 1)
	next := lockAsync(t, t.Context(), semaphore.New(newPool(t, dsn), "lease", 2, semaphore.WithRecheck(time.Hour)))
	awaitQueued(t, admin, holder, 2)
	proxy.Freeze()
	release(t, younger)
	r := await(t, next, awaitTimeout, "the waiter behind the frozen head")
	if r.err != nil {
		t.Fatalf("waiter behind the frozen head: %v", r.err)
	}
	// The frozen head's wait on the older slot has ended in the server.
	awaitLocks(t, admin, "not granted and "+keyCond(holder.SlotKey(holder.Slot(older))), 0)
	notYet(t, frozen, "the frozen head")
	proxy.Thaw()
	release(t, older)
	r2 := await(t, frozen, awaitTimeout, "the head, thawed")
	if r2.err != nil {
		t.Fatalf("head, thawed: %v", r2.err)
	}
	release(t, r.l)
	release(t, r2.l)
}

// Goroutines of one process wait behind one of them: the head listens on a
// pooled connection and waits on a slot on a lock session, the others queue
// in the process, and the pool stays usable.
func TestLock_inProcessQueue(t *testing.T) {
	t.Parallel()
	const goroutines = 40
	dsn := testDB(t)
	admin := newPool(t, dsn)
	holder := semaphore.New(newPool(t, dsn), "local", 2)
	a, b := mustLock(t, holder), mustLock(t, holder)
	pool := newPool(t, dsn)
	s := semaphore.New(pool, "local", 2)
	results := make(chan lockResult, goroutines)
	for range goroutines {
		go func() {
			l, err := s.Lock(t.Context())
			results <- lockResult{l: l, err: err}
		}()
	}
	awaitQueued(t, admin, s, 1)
	// The goroutines look at the slots first, each on a connection for a
	// moment; then one heads the queue (listening on a pooled connection,
	// and waiting in the server on a slot on a lock session) and the others
	// wait in the process.
	awaitAcquired(t, pool, 1)
	if err := pool.Ping(t.Context()); err != nil {
		t.Errorf("an unrelated query on the waiters' pool: %v", err)
	}
	release(t, a)
	release(t, b)
	for i := range goroutines {
		r := await(t, results, awaitTimeout, fmt.Sprintf("lock %d", i))
		if r.err != nil {
			t.Fatalf("lock %d: %v", i, r.err)
		}
		release(t, r.l)
	}
}

// TryLock does not jump the queue: with a waiter queued it fails even when a
// slot is free (here, while the head has not yet taken it).
func TestTryLock_respectsQueue(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	s := semaphore.New(newPool(t, dsn), "try-queue", 1)
	// A session holding the queue key stands for a head that has not taken
	// the free slot yet.
	k, _ := s.QueueKey().Int64()
	raw := pgtest.Connect(t, dsn)
	if _, err := raw.Exec(t.Context(), "select pg_advisory_lock($1::int8)", k); err != nil {
		t.Fatal(err)
	}
	_, err := s.TryLock(t.Context())
	if !errors.Is(err, advisorylock.ErrLocked) {
		t.Fatalf("TryLock with a waiter queued: %v; want ErrLocked", err)
	}
	ch := lockAsync(t, t.Context(), s)
	awaitQueued(t, admin, s, 2)
	if _, err := raw.Exec(t.Context(), "select pg_advisory_unlock($1::int8)", k); err != nil {
		t.Fatal(err)
	}
	r := await(t, ch, awaitTimeout, "Lock")
	if r.err != nil {
		t.Fatalf("Lock: %v", r.err)
	}
	release(t, r.l)
}

// The bound, from WithTimeout or the context's deadline, and a cancellation
// end a wait at every stage: behind another process's head (in the server's
// queue), heading the queue, and behind another goroutine of the process.
// Nothing is left held, and the pools are left clean (newPool checks).
func TestLock_timeoutsAndCancel(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	holder := semaphore.New(newPool(t, dsn), "bounded", 1)
	mustLock(t, holder)
	// Another process heads the queue, for the "behind a head" stage.
	otherHead, stopOther := context.WithCancel(t.Context())
	defer stopOther()
	otherCh := lockAsync(t, otherHead, semaphore.New(newPool(t, dsn), "bounded", 1))
	awaitQueued(t, admin, holder, 1)

	pool := newPool(t, dsn)
	for _, tt := range []struct {
		name string
		s    *semaphore.Semaphore
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"WithTimeout", semaphore.New(pool, "bounded", 1, semaphore.WithTimeout(150*time.Millisecond)),
			func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) }, context.DeadlineExceeded},
		{"context deadline", semaphore.New(pool, "bounded", 1),
			func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), 150*time.Millisecond)
			}, context.DeadlineExceeded},
		{"cancel", semaphore.New(pool, "bounded", 1),
			func() (context.Context, context.CancelFunc) { return context.WithCancel(t.Context()) }, context.Canceled},
	} {
		t.Run(tt.name+", behind a head", func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			ch := lockAsync(t, ctx, tt.s)
			awaitQueued(t, admin, holder, 2)
			// A second goroutine queues behind the first, in the process.
			ch2 := lockAsync(t, ctx, tt.s)
			if tt.want == context.Canceled {
				cancel()
			}
			for _, c := range []<-chan lockResult{ch, ch2} {
				if r := await(t, c, awaitTimeout, "Lock"); !errors.Is(r.err, tt.want) {
					t.Errorf("Lock = %v; want %v", r.err, tt.want)
				}
			}
			awaitQueued(t, admin, holder, 1)
		})
	}
	stopOther()
	if r := await(t, otherCh, awaitTimeout, "the other head"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("other head: %v; want Canceled", r.err)
	}
	awaitQueued(t, admin, holder, 0)
	for _, tt := range []struct {
		name string
		opt  semaphore.Option
		want error
	}{
		{"WithTimeout", semaphore.WithTimeout(150 * time.Millisecond), context.DeadlineExceeded},
		{"cancel", nil, context.Canceled},
	} {
		t.Run(tt.name+", heading the queue", func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := lockAsync(t, ctx, semaphore.New(pool, "bounded", 1, tt.opt))
			awaitQueued(t, admin, holder, 1)
			if tt.want == context.Canceled {
				cancel()
			}
			if r := await(t, ch, awaitTimeout, "Lock"); !errors.Is(r.err, tt.want) {
				t.Errorf("Lock = %v; want %v", r.err, tt.want)
			}
			awaitQueued(t, admin, holder, 0)
		})
	}
}
