package advisorylock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// awaitDone waits for l's Done, at most bound, and returns how long it took
// from start.
func awaitDone(t *testing.T, l *advisorylock.Lock, start time.Time, bound time.Duration) time.Duration {
	t.Helper()
	select {
	case <-l.Done():
		return time.Since(start)
	case <-time.After(bound):
		t.Fatalf("Done not closed %v after the fault", bound)
		return 0
	}
}

// A terminated holder's backend is noticed at once: Done closes, Err and
// Unlock report ErrLockLost, the connection is not returned to the pool, and
// another contender gets the lock.
func TestLost_terminatedBackend(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	m := advisorylock.New(pool, "terminated")
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pids := pgtest.AdvisoryLockPIDs(t, pool, "granted")
	if len(pids) != 1 {
		t.Fatalf("holders = %v; want one", pids)
	}
	total := pool.Stat().TotalConns()
	start := time.Now()
	pgtest.Terminate(t, pool, pids[0])
	took := awaitDone(t, l, start, 5*time.Second)
	t.Logf("terminated backend noticed after %v", took)
	if err := l.Err(); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Err = %v; want ErrLockLost", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Unlock after the loss = %v; want ErrLockLost", err)
	}
	if got := pool.Stat().TotalConns(); got != total {
		t.Errorf("pool has %d connections after the loss of a lock session; want %d (its own untouched)", got, total)
	}
	// The backend reports its end before it has released its locks on the
	// way out: wait for them.
	l2, err := advisorylock.New(pool, "terminated", advisorylock.WithTimeout(5*time.Second)).Lock(ctx)
	if err != nil {
		t.Fatalf("another contender after the loss: %v", err)
	}
	l2.Unlock(ctx)
}

// WithLock's function learns of the loss through its context's cause, and
// WithLock reports it next to the function's own result.
func TestLost_withLockContext(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "fn-lost")
	var took time.Duration
	got, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (string, error) {
		start := time.Now()
		pgtest.Terminate(t, pool, pgtest.AdvisoryLockPIDs(t, pool, "granted")...)
		select {
		case <-ctx.Done():
			took = time.Since(start)
		case <-time.After(5 * time.Second):
			return "", errors.New("fn's context not cancelled 5s after the loss")
		}
		if cause := context.Cause(ctx); !errors.Is(cause, advisorylock.ErrLockLost) {
			t.Errorf("context.Cause = %v; want ErrLockLost", cause)
		}
		return "stopped", nil
	})
	t.Logf("fn's context cancelled %v after the terminate", took)
	if got != "stopped" {
		t.Errorf("WithLock value = %q; want fn's \"stopped\"", got)
	}
	if !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("WithLock error = %v; want ErrLockLost", err)
	}
}

// A release that the server never answers is cut short at WithLock's release
// bound: fn's value comes back with ErrLockLost, and the connection is gone.
func TestWithLock_releaseBound(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		proxy, pool := pgtest.Require(t).ProxiedPool(t, pgtest.Database(t))
		const bound = 300 * time.Millisecond
		// No probe: only the release bound can notice the silence.
		m := advisorylock.New(pool, "release-bound", advisorylock.WithKeepalive(0), scope,
			advisorylock.WithReleaseTimeout(bound))
		t.Run(m.Scope().String(), func(t *testing.T) {
			var start time.Time
			got, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (string, error) {
				proxy.Freeze()
				start = time.Now()
				return "done", nil
			})
			took := time.Since(start)
			t.Logf("release on a silent network gave up after %v (bound %v): %v", took, bound, err)
			if got != "done" {
				t.Errorf("WithLock value = %q; want fn's \"done\"", got)
			}
			if !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("WithLock = %v; want ErrLockLost", err)
			}
			if took < bound || took > bound+2*time.Second {
				t.Errorf("release gave up after %v; want about %v", took, bound)
			}
			if n := pool.Stat().TotalConns(); n != 0 {
				t.Errorf("%d connections left in the pool; want the frozen one destroyed", n)
			}
			proxy.Thaw()
		})
	}
}

// A network that goes silent (the server neither answers nor closes) is
// noticed by the keepalive probe within two intervals.
func TestLost_silentNetwork(t *testing.T) {
	t.Parallel()
	proxy, pool := pgtest.Require(t).ProxiedPool(t, pgtest.Database(t))
	const interval = 250 * time.Millisecond
	m := advisorylock.New(pool, "silent", advisorylock.WithKeepalive(interval))
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	proxy.Freeze()
	took := awaitDone(t, l, start, 10*time.Second)
	t.Logf("silent network noticed after %v with a %v keepalive (bound %v)", took, interval, 2*interval+100*time.Millisecond)
	if took > 2*interval+time.Second {
		t.Errorf("noticed after %v; want within about two intervals (%v)", took, 2*interval)
	}
	if err := l.Err(); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Err = %v; want ErrLockLost", err)
	}
	if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Unlock = %v; want ErrLockLost", err)
	}
	proxy.Thaw()
}

// The keepalive probe costs at most one small query per interval, and none
// while the lock is released quickly.
func TestLost_probeCost(t *testing.T) {
	t.Parallel()
	var w writeCounter
	pool := pgtest.NewPool(t, pgtest.Database(t), w.configure)
	// A probe the server does not answer within an interval loses the lock:
	// the interval leaves a loaded machine time to answer.
	const interval = 250 * time.Millisecond
	m := advisorylock.New(pool, "probe", advisorylock.WithKeepalive(interval))
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := w.n.Load()
	const hold = time.Second
	time.Sleep(hold) // the subject is what an idle held lock sends over time
	probes := w.n.Load() - before
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d probes while held %v with a %v keepalive", probes, hold, interval)
	if max := int64(hold / interval); probes > max || probes < 1 {
		t.Errorf("probes = %d; want between 1 and %d", probes, max)
	}
}

// A server restart ends every session: every holder is told, and the lock can
// be taken again once the server is back.
func TestLost_serverRestart(t *testing.T) {
	// Serial: restarting the server ends every session, the other tests' too.
	srv := pgtest.Require(t)
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	var locks []*advisorylock.Lock
	for _, name := range []string{"restart-a", "restart-b", "restart-c"} {
		l, err := advisorylock.New(pool, name, advisorylock.Shared()).Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	start := time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	for i, l := range locks {
		took := awaitDone(t, l, start, 10*time.Second)
		if err := l.Err(); !errors.Is(err, advisorylock.ErrLockLost) {
			t.Errorf("holder %d: Err = %v; want ErrLockLost", i, err)
		}
		t.Logf("holder %d told of the restart after %v", i, took)
	}
	l, err := advisorylock.New(pool, "restart-a").Lock(ctx)
	if err != nil {
		t.Fatalf("lock after the restart: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// In transaction scope a broken connection ends the transaction: the next
// statement fails, fn's context is cancelled with ErrLockLost, and WithLock
// reports the loss.
func TestLost_transactionScope(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "tx-lost", advisorylock.TransactionScope())
	_, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
		l, _ := advisorylock.LockFromContext(ctx)
		tx := l.Tx()
		var pid int32
		if err := tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
			return 0, err
		}
		pgtest.Terminate(t, pool, pid)
		if _, err := tx.Exec(ctx, "select 1"); err == nil {
			return 0, errors.New("a statement on a terminated session succeeded")
		}
		select {
		case <-ctx.Done():
		default:
			t.Error("fn's context not cancelled after the transaction's connection broke")
		}
		if cause := context.Cause(ctx); !errors.Is(cause, advisorylock.ErrLockLost) {
			t.Errorf("context.Cause = %v; want ErrLockLost", cause)
		}
		return 1, nil
	})
	if !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("WithLock = %v; want ErrLockLost", err)
	}
}

// A hot standby's advisory locks exclude nobody on the primary: locking there
// is refused, and the check costs no round trip.
func TestLock_refusesHotStandby(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	standby, err := srv.StartStandby(t.Context())
	if err != nil {
		t.Fatalf("starting a standby: %v", err)
	}
	t.Cleanup(func() { standby.Stop() })
	var w writeCounter
	pool := pgtest.NewPool(t, standby.DSN(), w.configure)
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		m := advisorylock.New(pool, "standby", scope)
		// The first refusal opens the lock session (a connection, no
		// statement); from then on refusing costs nothing.
		if _, err := m.TryLock(t.Context()); !errors.Is(err, advisorylock.ErrStandby) {
			t.Errorf("%s TryLock on a standby = %v; want ErrStandby", m.Scope(), err)
		}
		before := w.n.Load()
		if _, err := m.Lock(t.Context()); !errors.Is(err, advisorylock.ErrStandby) {
			t.Errorf("%s Lock on a standby = %v; want ErrStandby", m.Scope(), err)
		}
		if _, err := m.TryLock(t.Context()); !errors.Is(err, advisorylock.ErrStandby) {
			t.Errorf("%s TryLock on a standby = %v; want ErrStandby", m.Scope(), err)
		}
		if got := w.n.Load() - before; got != 0 {
			t.Errorf("refusing cost %d round trips; want 0", got)
		}
	}
}
