package advisorylock_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// waitPlaces are the places a Lock waits in the server, for tests run in each.
var waitPlaces = []struct {
	label string
	opt   advisorylock.Option
}{
	{"pinned", advisorylock.PinConnection()},
	{"lock-session", nil},
	{"transaction", advisorylock.TransactionScope()},
}

// lockResult is what a Lock run in the background returned.
type lockResult struct {
	l   *advisorylock.Lock
	err error
}

// lockAsync runs m.Lock in the background.
func lockAsync(ctx context.Context, m *advisorylock.Mutex) <-chan lockResult {
	c := make(chan lockResult, 1)
	go func() {
		l, err := m.Lock(ctx)
		c <- lockResult{l, err}
	}()
	return c
}

// isSQLState reports whether err wraps a server error of SQLSTATE code.
func isSQLState(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// A wait whose backend is terminated before the grant waits again on a fresh
// connection, says so to the hooks, and gets the lock when the holder lets
// go: the caller never sees the lost connection.
func TestLock_waitSurvivesTerminatedBackend(t *testing.T) {
	t.Parallel()
	for _, p := range waitPlaces {
		t.Run(p.label, func(t *testing.T) {
			t.Parallel()
			pool, other := twoPools(t)
			ctx := t.Context()
			holder, err := advisorylock.New(other, "retry").Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rec := newHookRecorder("r")
			m := advisorylock.New(pool, "retry", p.opt, advisorylock.WithHooks(rec), advisorylock.WithTimeout(time.Minute))
			res := lockAsync(ctx, m)
			pgtest.AwaitWaiters(t, other, 1)
			first := pgtest.AdvisoryLockPIDs(t, other, "not granted")[0]
			pgtest.Terminate(t, other, first)

			rec.log.await(t, "AcquireRetry", 1)
			// Waiting again, on another session.
			for {
				pgtest.AwaitWaiters(t, other, 1)
				if w := pgtest.AdvisoryLockPIDs(t, other, "not granted"); len(w) == 1 && w[0] != first {
					break
				}
			}
			select {
			case r := <-res:
				t.Fatalf("Lock returned (%v, %v) while the lock was held; want it waiting", r.l, r.err)
			default:
			}
			if err := holder.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-res
			if r.err != nil {
				t.Fatalf("Lock after its wait lost its backend = %v; want the lock", r.err)
			}
			if got := pgtest.AdvisoryLockPIDs(t, other, "granted"); !slices.Equal(got, []int32{r.l.PID()}) {
				t.Errorf("holders %v; want the new session %d alone", got, r.l.PID())
			}
			retries := rec.log.only("AcquireRetry")
			if len(retries) != 1 {
				t.Fatalf("AcquireRetry calls: %d; want 1 (log %v)", len(retries), rec.log.ops())
			}
			d := retries[0].retry
			if d.Retry != 1 || d.Delay <= 0 || !isSQLState(d.Err, "57P01") {
				t.Errorf("AcquireRetryData = %+v; want retry 1, a pause, and the termination (57P01)", d)
			}
			if !slices.Equal(retries[0].path, []string{"r.AcquireStart"}) {
				t.Errorf("AcquireRetry's context went through %v; want the acquisition's", retries[0].path)
			}
			if err := r.l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			assertBalanced(t, rec.log)
			if ops := rec.log.ops(); !slices.Equal(ops[:3], []string{"r.AcquireStart", "r.AcquireRetry", "r.AcquireEnd"}) {
				t.Errorf("hook calls %v; want AcquireStart, AcquireRetry, AcquireEnd first", ops)
			}
		})
	}
}

// A pinned pooled connection found dead on first use is a wait that lost its
// connection: Lock starts again on another, while TryLock, one round trip,
// reports the failure and does not retry.
func TestLock_deadPooledConnection(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn, func(c *pgxpool.Config) {
		c.MaxConns = 1
		// No liveness ping before use: the dead connection is handed out.
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	admin := pgtest.NewPool(t, dsn)
	ctx := t.Context()
	kill := func() {
		t.Helper()
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pid := int32(c.Conn().PgConn().PID())
		c.Release()
		terminateAndWait(t, admin, pid)
	}

	rec := newHookRecorder("r")
	m := advisorylock.New(pool, "dead-conn", advisorylock.WithHooks(rec), advisorylock.PinConnection())
	kill()
	if l, err := m.TryLock(ctx); err == nil || errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("TryLock on a dead connection = (%v, %v); want its failure", l, err)
		if l != nil {
			l.Unlock(ctx)
		}
	}
	if n := len(rec.log.only("AcquireRetry")); n != 0 {
		t.Errorf("TryLock retried %d times; want never", n)
	}

	kill()
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock on a dead connection = %v; want the lock, on another", err)
	}
	if n := len(rec.log.only("AcquireRetry")); n != 1 {
		t.Errorf("AcquireRetry calls: %d; want 1", n)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// A server restart under a wait: the holder is told its lock is lost, and the
// waiter, which waits again once the server is back, gets the lock.
func TestLock_waitSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.StartPrivate(t)
	dsn := srv.CreateDatabase(t)
	for _, p := range waitPlaces {
		t.Run(p.label, func(t *testing.T) {
			// Serial: each restarts the private server. The admin pool's
			// idle connections die in the restart.
			pool, other, admin := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn), plainPool(t, dsn)
			ctx := t.Context()
			holder, err := advisorylock.New(other, "restart", p.opt).Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rec := newHookRecorder("r")
			res := lockAsync(ctx, advisorylock.New(pool, "restart", p.opt, advisorylock.WithHooks(rec),
				advisorylock.WithTimeout(time.Minute)))
			pgtest.AwaitWaiters(t, admin, 1)
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if holder.Tx() == nil {
				// A session lock is watched; a transaction's loss shows at
				// its next statement, or its release (below).
				awaitDone(t, holder, time.Now(), 10*time.Second)
			}
			if err := holder.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("holder's Unlock = %v; want ErrLockLost", err)
			}
			r := <-res
			if r.err != nil {
				t.Fatalf("waiter after the restart = %v; want the lock", r.err)
			}
			if len(rec.log.only("AcquireRetry")) == 0 {
				t.Error("no AcquireRetry; want the waiter to have said it waits again")
			}
			if err := r.l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A server that stays away past the bound fails the wait: with an error
// matching context.DeadlineExceeded that wraps why no connection could be had,
// after retrying meanwhile.
func TestLock_serverGoneFailsAtTheBound(t *testing.T) {
	t.Parallel()
	srv := pgtest.StartPrivate(t)
	dsn := srv.DSN() // the server's own: the test's would outlive it
	admin := plainPool(t, dsn)
	const bound = 3 * time.Second
	recs := make([]*hookRecorder, len(waitPlaces))
	results := make([]<-chan lockResult, len(waitPlaces))
	for i, p := range waitPlaces {
		name := "gone-" + p.label
		holder, err := advisorylock.New(plainPool(t, dsn), name, p.opt).Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// Before its pool closes, which waits for the connection it pins.
		t.Cleanup(func() { _ = holder.Unlock(context.Background()) })
		recs[i] = newHookRecorder("r")
		results[i] = lockAsync(t.Context(), advisorylock.New(plainPool(t, dsn), name, p.opt,
			advisorylock.WithHooks(recs[i]), advisorylock.WithTimeout(bound)))
	}
	pgtest.AwaitWaiters(t, admin, len(waitPlaces))
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, p := range waitPlaces {
		r, rec := <-results[i], recs[i]
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("%s: Lock with the server gone = (%v, %v); want context.DeadlineExceeded", p.label, r.l, r.err)
			continue
		}
		var ce *pgconn.ConnectError
		if !errors.As(r.err, &ce) {
			t.Errorf("%s: error %v; want it to say why no connection could be had", p.label, r.err)
		}
		if len(rec.log.only("AcquireRetry")) < 2 {
			t.Errorf("%s: AcquireRetry calls %v; want several before giving up", p.label, rec.log.ops())
		}
		ends := rec.log.only("AcquireEnd")
		if len(ends) != 1 || ends[0].acquireEnd.Outcome != advisorylock.OutcomeTimeout {
			t.Errorf("%s: AcquireEnd %+v; want one, a timeout", p.label, ends)
		}
	}
}

// plainPool returns a pool on dsn closed when t ends, without pgtest.NewPool's
// checks, which need the server.
func plainPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
