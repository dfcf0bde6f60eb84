package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// serverSessions counts the server sessions connected to dsn's database,
// other than the one asking.
func serverSessions(t *testing.T, admin *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := admin.QueryRow(t.Context(), `select count(*) from pg_stat_activity
		where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// queryTimes returns the times of 200 unrelated queries on pool.
func queryTimes(t *testing.T, pool *pgxpool.Pool) []time.Duration {
	t.Helper()
	ds := make([]time.Duration, 200)
	for i := range ds {
		start := time.Now()
		var one int
		if err := pool.QueryRow(t.Context(), "select 1").Scan(&one); err != nil {
			t.Fatalf("an unrelated query: %v", err)
		}
		ds[i] = time.Since(start)
	}
	return ds
}

// A thousand session locks, held at once by one process, cost at most two
// server sessions (the default WithMaxSessions) and none of the pool's
// connections: an unrelated query on a default-sized pool still runs.
func TestSessions_thousandLocks(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 4 })
	admin := pgtest.NewPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 1 })
	warm(t, admin, 1)
	warm(t, pool, 4)
	// The idle times are taken before and after the locks are held, so that
	// the machine's drift weighs on both alike.
	idle := queryTimes(t, pool)
	const n = 1000
	locks := make([]*advisorylock.Lock, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < n; i += 16 {
				l, err := advisorylock.New(pool, fmt.Sprint("many-", i)).Lock(t.Context())
				if err != nil {
					errs <- err
					return
				}
				locks[i] = l
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := pool.Stat().AcquiredConns(); got != 0 {
		t.Errorf("%d pooled connections acquired while %d locks are held; want 0", got, n)
	}
	if got := serverSessions(t, admin); got > advisorylock.DefaultMaxSessions+int(pool.Stat().TotalConns()) {
		t.Errorf("%d server sessions with %d locks held (pool: %d); want at most %d lock sessions",
			got, n, pool.Stat().TotalConns(), advisorylock.DefaultMaxSessions)
	}
	busy := median(queryTimes(t, pool))
	sessions := serverSessions(t, admin) - int(pool.Stat().TotalConns())
	for _, l := range locks {
		if err := l.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	idleMedian := median(append(idle, queryTimes(t, pool)...))
	t.Logf("%d locks held on %d server sessions besides the pool's; an unrelated query's median: %v idle, %v while they are held (%.2fx)",
		n, sessions, idleMedian, busy, float64(busy)/float64(idleMedian))
}

// Two goroutines of one process asking for one key in conflicting modes never
// both get it, though PostgreSQL's session locks are reentrant and the
// requests may travel on one lock session: in every combination of modes,
// and for a set overlapping a single key, the second request is refused while
// the first holds, and granted after.
func TestSessions_reentrancyNeverShares(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	single := func(opts ...advisorylock.Option) func() *advisorylock.Mutex {
		return func() *advisorylock.Mutex { return advisorylock.New(pool, "k", opts...) }
	}
	set := func(opts ...advisorylock.Option) func() *advisorylock.Mutex {
		return func() *advisorylock.Mutex { return advisorylock.NewSet(pool, []string{"j", "k"}, opts...) }
	}
	for _, tt := range []struct {
		name          string
		first, second func() *advisorylock.Mutex
		share         bool // the second may hold with the first
	}{
		{"exclusive then exclusive", single(), single(), false},
		{"shared then exclusive", single(advisorylock.Shared()), single(), false},
		{"exclusive then shared", single(), single(advisorylock.Shared()), false},
		{"shared then shared", single(advisorylock.Shared()), single(advisorylock.Shared()), true},
		{"set then single", set(), single(), false},
		{"single then set", single(), set(), false},
		{"shared set then exclusive single", set(advisorylock.Shared()), single(), false},
		{"shared single then exclusive set", single(advisorylock.Shared()), set(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first, err := tt.first().Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			second, err := tt.second().TryLock(t.Context())
			switch {
			case tt.share && err != nil:
				t.Fatalf("TryLock while the first holds: %v; want it granted", err)
			case !tt.share && !errors.Is(err, advisorylock.ErrLocked):
				t.Fatalf("TryLock while the first holds: %v; want ErrLocked", err)
			}
			if second != nil {
				if err := second.Unlock(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			// A Lock waits until the first lets go: bounded, it times out.
			if !tt.share {
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				_, err := tt.second().Lock(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Lock while the first holds: %v; want context.DeadlineExceeded", err)
				}
			}
			if err := first.Unlock(t.Context()); err != nil {
				t.Fatal(err)
			}
			l, err := tt.second().TryLock(t.Context())
			if err != nil {
				t.Fatalf("TryLock after the first let go: %v", err)
			}
			if err := l.Unlock(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A lock session the server ends takes every lock it carries with it, and
// each holder is told: Done closes, Err and Unlock report ErrLockLost.
func TestSessions_terminatedSessionLosesEveryLock(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	admin := pgtest.NewPool(t, dsn)
	const n = 50
	var locks []*advisorylock.Lock
	for i := range n {
		l, err := advisorylock.New(pool, fmt.Sprint("lost-", i), advisorylock.WithMaxSessions(1)).Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	pid := locks[0].PID()
	for _, l := range locks {
		if l.PID() != pid {
			t.Fatalf("locks on sessions %d and %d; want one session with WithMaxSessions(1)", pid, l.PID())
		}
	}
	start := time.Now()
	pgtest.Terminate(t, admin, pid)
	for _, l := range locks {
		select {
		case <-l.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Done not closed 10s after the session was terminated")
		}
	}
	t.Logf("%d locks told of the terminated session within %v", n, time.Since(start))
	for _, l := range locks {
		if !errors.Is(l.Err(), advisorylock.ErrLockLost) {
			t.Fatalf("Err = %v; want ErrLockLost", l.Err())
		}
		if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
			t.Fatalf("Unlock = %v; want ErrLockLost", err)
		}
	}
}

// Keepalive probes are per lock session, not per lock: holding 1, 100 or
// 1,000 locks costs the same probes per second. A held lock costs no
// goroutine of its own.
func TestSessions_costPerHeldLock(t *testing.T) {
	// Serial: it counts the whole process's goroutines, which parallel tests
	// start and end meanwhile (one CI run saw 5 more with 100 locks).
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	const keepalive = 100 * time.Millisecond
	for _, n := range []int{1, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			opt := advisorylock.WithKeepalive(keepalive)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			goroutines := runtime.NumGoroutine()
			locks := make([]*advisorylock.Lock, n)
			for i := range locks {
				l, err := advisorylock.New(pool, fmt.Sprint("cost-", n, "-", i), opt).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				locks[i] = l
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			extra := runtime.NumGoroutine() - goroutines
			probes0 := locks[0].ProbesSent()
			time.Sleep(10 * keepalive) // the figure is a rate over time
			probes := locks[0].ProbesSent() - probes0
			t.Logf("%d locks: %d goroutines more, %.0f bytes of heap each, %d probes in %v",
				n, extra, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), probes, 10*keepalive)
			if extra > 4 {
				t.Errorf("%d more goroutines with %d locks held; want a few, for the lock sessions only", extra, n)
			}
			if probes > 22 {
				t.Errorf("%d probes in %v with %d locks; want at most two per keepalive interval, for one session", probes, 10*keepalive, n)
			}
			for _, l := range locks {
				if err := l.Unlock(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// When the server's lock table is full, a lock fails with ErrLockTable, whose
// message names the setting to raise, and nothing else is disturbed: the
// locks held stay held, and the lock session keeps serving.
func TestSessions_lockTableFull(t *testing.T) {
	t.Parallel()
	// A server of the test's own: a full lock table stops every lock of
	// every session of the server, and the shared one runs other tests.
	srv := pgtest.StartPrivate(t, "max_locks_per_transaction=10", "max_connections=10")
	pool := pgtest.NewPool(t, srv.DSN(), func(c *pgxpool.Config) { c.MaxConns = 3 })
	// Connections open before the table fills: a new one needs room in it.
	warm(t, pool, 2)
	var held []*advisorylock.Lock
	var full error
	for i := 0; i < 100_000 && full == nil; i++ {
		l, err := advisorylock.NewWithKey(pool, advisorylock.Int64Key(int64(i))).TryLock(t.Context())
		switch {
		case errors.Is(err, advisorylock.ErrLockTable):
			full = err
		case err != nil:
			t.Fatalf("lock %d: %v", i, err)
		default:
			held = append(held, l)
		}
	}
	if full == nil {
		t.Fatalf("%d locks held and the lock table is not full", len(held))
	}
	t.Logf("lock table full after %d locks: %v", len(held), full)
	if !strings.Contains(full.Error(), "max_locks_per_transaction") {
		t.Errorf("error %q does not name the setting to raise", full)
	}
	// A lock on a pooled connection of its own, and a transaction-scoped
	// one, are refused the same way.
	for _, opt := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		_, err := advisorylock.NewWithKey(pool, advisorylock.Int64Key(-2), opt).TryLock(t.Context())
		if !errors.Is(err, advisorylock.ErrLockTable) {
			t.Errorf("TryLock on a pooled connection with the table full: %v; want ErrLockTable", err)
		}
	}
	for _, l := range held {
		if err := l.Err(); err != nil {
			t.Fatalf("a lock held before the table filled: %v", err)
		}
	}
	// One let go makes room for another.
	if err := held[0].Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	l, err := advisorylock.NewWithKey(pool, advisorylock.Int64Key(-1)).TryLock(t.Context())
	if err != nil {
		t.Fatalf("a lock once there is room: %v", err)
	}
	held[0] = l
	for _, l := range held {
		if err := l.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// The package keeps a pool's lock sessions while a Mutex (or anything else)
// holds the pool, and forgets them once nothing does: a process that makes
// and drops pools does not keep them all.
func TestSessions_poolForgotten(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	wp := func() weak.Pointer[pgxpool.Pool] {
		// Not pgtest.NewPool: its end-of-test check holds the pool.
		pool, err := pgxpool.New(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		l, err := advisorylock.New(pool, "forgotten").Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
		wp := weak.Make(pool)
		if n := advisorylock.SessionSetsOf(wp); n != 1 {
			t.Errorf("%d session sets for a pool in use; want 1", n)
		}
		return wp
	}()
	deadline := time.Now().Add(10 * time.Second)
	for advisorylock.SessionSetsOf(wp) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the session set of a pool nothing holds is still kept (pool collected: %v)", wp.Value() == nil)
		}
		runtime.GC() // what the loop waits for: the pool's collection
	}
}
