package semaphore_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/semaphore"
)

// awaitTimeout bounds every wait of a test for something to happen.
const awaitTimeout = 10 * time.Second

// testDB creates a database of the test's own (advisory locks are per
// database, so tests cannot see each other's locks, and may run in parallel)
// and checks, when the test ends, that no session holds or awaits an advisory
// lock in it.
func testDB(t *testing.T) string {
	t.Helper()
	return pgtest.Database(t)
}

// newPool returns a pool on dsn, checked when the test ends: see
// pgtest.NewPool. Each pool stands for a process of its own.
func newPool(t *testing.T, dsn string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t, dsn, configure...)
}

// mustLock takes a slot of s, failing t on error, and releases it when the
// test ends if it is still held.
func mustLock(t *testing.T, s *semaphore.Semaphore) *advisorylock.Lock {
	t.Helper()
	l, err := s.Lock(t.Context())
	if err != nil {
		t.Fatalf("%v: Lock: %v", s, err)
	}
	t.Cleanup(func() { release(t, l) })
	return l
}

// release unlocks l unless it is already released or known lost.
func release(t testing.TB, l *advisorylock.Lock) {
	t.Helper()
	lost := errors.Is(l.Err(), advisorylock.ErrLockLost)
	ctx, cancel := context.WithTimeout(context.Background(), awaitTimeout)
	defer cancel()
	if err := l.Unlock(ctx); err != nil && !errors.Is(err, advisorylock.ErrNotHeld) && !lost {
		t.Errorf("Unlock: %v", err)
	}
}

// awaitAcquired waits until n connections of pool are acquired, or fails t
// after 10s.
func awaitAcquired(t *testing.T, pool *pgxpool.Pool, n int32) {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	for pool.Stat().AcquiredConns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections acquired from the pool; want %d", pool.Stat().AcquiredConns(), n)
		}
		time.Sleep(5 * time.Millisecond) // nothing signals a connection's release
	}
}

type lockResult struct {
	l   *advisorylock.Lock
	err error
	at  time.Time
}

// lockAsync takes a slot of s in a goroutine of its own; a lock the test
// never receives is released when the test ends.
func lockAsync(t *testing.T, ctx context.Context, s *semaphore.Semaphore) <-chan lockResult {
	t.Helper()
	ch := make(chan lockResult, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l, err := s.Lock(ctx)
		ch <- lockResult{l, err, time.Now()}
	}()
	t.Cleanup(func() {
		wg.Wait()
		select {
		case r := <-ch:
			if r.l != nil {
				release(t, r.l)
			}
		default:
		}
	})
	return ch
}

// await receives from ch, or fails t after d.
func await[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing after %v", what, d)
		panic("unreachable")
	}
}

// notYet fails t if ch has a value now.
func notYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s: got %v; want it still waiting", what, v)
	default:
	}
}

// awaitLocks waits until n advisory locks of pool's database match cond, an
// SQL condition on pg_locks, or fails t after 10s.
func awaitLocks(t *testing.T, pool *pgxpool.Pool, cond string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), awaitTimeout)
	defer cancel()
	if got, err := pgtest.WaitAdvisoryLocks(ctx, pool, cond, n); err != nil {
		t.Fatalf("advisory locks where %s: got %d; want %d: %v", cond, got, n, err)
	}
}

// awaitQueued waits until the server shows n sessions in s's queue: the
// head, which holds the queue key, and those awaiting it.
func awaitQueued(t *testing.T, pool *pgxpool.Pool, s *semaphore.Semaphore, n int) {
	t.Helper()
	awaitLocks(t, pool, keyCond(s.QueueKey()), n)
}

// keyCond is the pg_locks condition that selects key's rows.
func keyCond(k advisorylock.Key) string {
	v, _ := k.Int64()
	return "objsubid = 1 and classid::int8 = " + itoa(int64(uint64(v)>>32)) + " and objid::int8 = " + itoa(int64(uint32(v)))
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func uitoa(v uint64) string { return strconv.FormatUint(v, 10) }

// writeCounter counts the writes to the server on a pool's connections: pgx
// sends each round trip's messages in one write.
type writeCounter struct{ n atomic.Int64 }

func (w *writeCounter) configure(cfg *pgxpool.Config) {
	var d net.Dialer
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countedConn{Conn: c, w: w}, nil
	}
}

type countedConn struct {
	net.Conn
	w *writeCounter
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.w.n.Add(1)
	return c.Conn.Write(b)
}
