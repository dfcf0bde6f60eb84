package advisorylock_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// appName sets the application_name of a pool's sessions, so that a monitor
// can tell them apart in pg_stat_activity.
func appName(name string) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) { cfg.ConnConfig.RuntimeParams["application_name"] = name }
}

// lockSessions counts the sessions named app that hold or await an advisory
// lock in monitor's database.
func lockSessions(ctx context.Context, monitor *pgxpool.Pool, app string) (int, error) {
	var n int
	err := monitor.QueryRow(ctx, `select count(distinct l.pid) from pg_locks l join pg_stat_activity a using (pid)
		where l.locktype = 'advisory' and a.application_name = $1
		and l.database = (select oid from pg_database where datname = current_database())`, app).Scan(&n)
	return n, err
}

// 200 goroutines of one process contending for one key spend one pooled
// connection on it: the others queue in the process. The pool's other three
// connections stay free for the application's queries throughout.
func TestCoalesce_poolNotPinned(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	const app = "contenders"
	pool := pgtest.NewPool(t, dsn, appName(app)) // 4 connections
	monitor := pgtest.NewPool(t, dsn)
	warm(t, pool, 4)

	// Another process (a pool of its own) holds the lock while the
	// goroutines line up.
	holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "busy").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	idle := queryLatencies(t, pool, 50)

	const goroutines = 200
	m := advisorylock.New(pool, "busy")
	var (
		wg        sync.WaitGroup
		inSection atomic.Int32
		overlaps  atomic.Int32
		sections  atomic.Int32
	)
	errc := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			_, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (struct{}, error) {
				if inSection.Add(1) != 1 {
					overlaps.Add(1)
				}
				sections.Add(1)
				inSection.Add(-1)
				return struct{}{}, nil
			})
			if err != nil {
				errc <- err
			}
		})
	}
	pgtest.AwaitWaiters(t, pool, 1)

	// A monitor samples, until every goroutine is done, how many of the
	// pool's sessions hold or await the lock.
	var maxSessions atomic.Int32
	stop := make(chan struct{})
	monitorDone := make(chan error, 1)
	go func() {
		for {
			n, err := lockSessions(context.Background(), monitor, app)
			if err != nil {
				monitorDone <- err
				return
			}
			if int32(n) > maxSessions.Load() {
				maxSessions.Store(int32(n))
			}
			select {
			case <-stop:
				monitorDone <- nil
				return
			default:
			}
		}
	}()

	// All 200 are waiting now, and three connections are free: take them at
	// once, as the application would.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	var free []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquiring connection %d of 3 while 200 goroutines wait for the lock: %v", len(free)+1, err)
		}
		free = append(free, c)
	}
	cancel()
	for _, c := range free {
		c.Release()
	}
	waiting := queryLatencies(t, pool, 50)

	// The lock passes through all 200, one at a time, while the application
	// keeps querying.
	if err := holder.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	var handoff []time.Duration
	for running := true; running; {
		handoff = append(handoff, queryLatencies(t, pool, 1)...)
		select {
		case <-drained:
			running = false
		default:
		}
	}
	close(stop)
	if err := <-monitorDone; err != nil {
		t.Fatalf("monitor: %v", err)
	}
	close(errc)
	for err := range errc {
		t.Errorf("WithLock: %v", err)
	}
	if got := sections.Load(); got != goroutines {
		t.Errorf("%d critical sections ran; want %d", got, goroutines)
	}
	if got := overlaps.Load(); got != 0 {
		t.Errorf("%d critical sections overlapped another", got)
	}
	if got := maxSessions.Load(); got > 1 {
		t.Errorf("up to %d of the pool's sessions held or awaited the lock at once; want at most 1", got)
	}
	t.Logf("unrelated query on the same pool (median / max): idle %v / %v; 200 waiting %v / %v; during %d hand-offs %v / %v",
		median(idle), slices.Max(idle), median(waiting), slices.Max(waiting), goroutines, median(handoff), slices.Max(handoff))
}

// queryLatencies runs n unrelated queries on pool, one after another, and
// returns how long each took, including the wait for a connection.
func queryLatencies(t *testing.T, pool *pgxpool.Pool, n int) []time.Duration {
	t.Helper()
	d := make([]time.Duration, n)
	for i := range d {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		start := time.Now()
		var one int
		err := pool.QueryRow(ctx, "select 1").Scan(&one)
		d[i] = time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("unrelated query: %v", err)
		}
	}
	return d
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// A wait that queues in the process is bounded like one in the server, and
// gives up without taking a connection from the pool.
func TestCoalesce_boundInProcess(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	holder, err := advisorylock.New(pool, "q").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(context.Background())

	t.Run("timeout", func(t *testing.T) {
		const bound = 100 * time.Millisecond
		m := advisorylock.New(pool, "q", advisorylock.WithTimeout(bound))
		acquires := pool.Stat().AcquireCount()
		start := time.Now()
		_, err := m.Lock(t.Context())
		elapsed := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock = %v; want context.DeadlineExceeded", err)
		}
		if elapsed < bound {
			t.Errorf("gave up after %v; want at least the bound %v", elapsed, bound)
		}
		t.Logf("in-process wait gave up %v after its %v bound", elapsed-bound, bound)
		if got := pool.Stat().AcquireCount() - acquires; got != 0 {
			t.Errorf("the wait took %d connections from the pool; want 0", got)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		m := advisorylock.New(pool, "q")
		acquires := pool.Stat().AcquireCount()
		ctx, cancel := context.WithCancelCause(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := m.Lock(ctx)
			errc <- err
		}()
		cancel(errors.New("shutting down"))
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock = %v; want context.Canceled", err)
		}
		if got := pool.Stat().AcquireCount() - acquires; got != 0 {
			t.Errorf("the wait took %d connections from the pool; want 0", got)
		}
	})
	t.Run("TryLock", func(t *testing.T) {
		// The process holds the lock itself: TryLock knows without asking the
		// server.
		m := advisorylock.New(pool, "q")
		acquires := pool.Stat().AcquireCount()
		if _, err := m.TryLock(t.Context()); !errors.Is(err, advisorylock.ErrLocked) {
			t.Fatalf("TryLock = %v; want ErrLocked", err)
		}
		if got := pool.Stat().AcquireCount() - acquires; got != 0 {
			t.Errorf("TryLock took %d connections from the pool; want 0", got)
		}
	})
	t.Run("transaction scope", func(t *testing.T) {
		// Session and transaction locks on one key exclude each other, so
		// they queue together.
		m := advisorylock.New(pool, "q", advisorylock.TransactionScope())
		if _, err := m.TryLock(t.Context()); !errors.Is(err, advisorylock.ErrLocked) {
			t.Fatalf("TryLock = %v; want ErrLocked", err)
		}
	})
}

// Goroutines queued in the process take the lock in the order they asked.
func TestCoalesce_fifo(t *testing.T) {
	// Serial: awaitQueued counts the whole process's goroutines queued for a lock.
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "fifo")
	holder, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			l, err := m.Lock(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := l.Unlock(t.Context()); err != nil {
				t.Error(err)
			}
		})
		// Goroutine i is in line once it blocks in the queue.
		awaitQueued(t, i+1)
	}
	if err := holder.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !slices.IsSorted(order) || len(order) != n {
		t.Errorf("grant order %v; want 0..%d in order", order, n-1)
	}
}

// Shared holders of one process hold the lock together; while they wait for
// an exclusive holder elsewhere, only one of them waits in the server.
func TestCoalesce_shared(t *testing.T) {
	t.Parallel()
	pool, other := twoPools(t)
	exclusive, err := advisorylock.New(other, "s").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m := advisorylock.New(pool, "s", advisorylock.Shared())
	const n = 4
	locks := make(chan *advisorylock.Lock, n)
	errc := make(chan error, n)
	for range n {
		go func() {
			l, err := m.Lock(t.Context())
			if err != nil {
				errc <- err
				return
			}
			locks <- l
		}()
	}
	// One waits in the server, on a lock session; the others in the
	// process. None takes a pooled connection.
	pgtest.AwaitWaiters(t, pool, 1)
	if got := pool.Stat().AcquiredConns(); got != 0 {
		t.Errorf("%d pooled connections acquired by %d shared waiters; want 0", got, n)
	}
	if err := exclusive.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	// All four hold the lock at the same time.
	var held []*advisorylock.Lock
	for range n {
		select {
		case l := <-locks:
			held = append(held, l)
		case err := <-errc:
			t.Fatal(err)
		}
	}
	// Shared holds of one process share lock sessions: pg_locks shows one
	// row per session, not per hold.
	if pids := pgtest.AdvisoryLockPIDs(t, other, "granted"); len(pids) < 1 || len(pids) > n {
		t.Errorf("sessions holding the shared lock: %v; want between 1 and %d", pids, n)
	}
	for _, l := range held {
		if err := l.Unlock(t.Context()); err != nil {
			t.Error(err)
		}
	}
}

// awaitQueued waits until n goroutines are blocked in the process's lock
// queue, as their stacks show, or fails t after 10s.
func awaitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		got := 0
		for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, "advisorylock.(*Mutex).enter(") {
				got++
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines queued for the lock; want %d", got, n)
		}
		runtime.Gosched()
	}
}
