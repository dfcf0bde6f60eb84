package pgtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lockWait bounds AwaitAdvisoryLocks and the checks of NewPool.
const lockWait = 10 * time.Second

// NewPool returns a pool on dsn with at most 4 connections, then as
// configure sets. When the test ends it checks that no connection is still
// acquired and that no idle pooled connection holds an advisory lock, then
// closes the pool (unless a connection is still out: Close would wait for it
// and hang the run).
func NewPool(t testing.TB, dsn string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	for _, f := range configure {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		AssertPoolClean(t, pool)
		if pool.Stat().AcquiredConns() == 0 {
			pool.Close()
		}
	})
	return pool
}

// AssertPoolClean fails t if a connection of pool is still acquired 10s on
// (pgxpool destroys a released broken connection in the background, and
// counts it acquired until then) or an idle one holds an advisory lock.
func AssertPoolClean(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	for pool.Stat().AcquiredConns() != 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond): // nothing signals a destroyed connection
		}
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired from the pool after %v; want 0", n, lockWait)
	}
	for _, c := range pool.AcquireAllIdle(ctx) {
		var n int
		err := c.QueryRow(ctx, "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()").Scan(&n)
		switch {
		case err != nil && c.Conn().IsClosed():
			// An idle connection whose session ended (a fault of a chaos
			// run, say) holds nothing: the server released what the
			// session held when it ended.
			// Taken from the pool at once: released, it would count as
			// acquired until pgxpool destroyed it in the background.
			t.Logf("an idle pooled connection had ended: %v", err)
			_ = c.Hijack().Close(context.Background())
			continue
		case err != nil:
			t.Errorf("checking a pooled connection: %v", err)
		case n != 0:
			t.Errorf("a pooled connection holds %d advisory locks; want 0", n)
		}
		c.Release()
	}
}

// AwaitAdvisoryLocks waits until n advisory locks (held or awaited) of dsn's
// database match cond, an SQL condition on pg_locks such as "granted" or
// "true", and fails t (with Errorf, so that it may run in a cleanup) if that
// does not happen within 10s. It uses a connection of its own.
func AwaitAdvisoryLocks(t testing.TB, dsn, cond string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("connecting to check locks: %v", err)
		return
	}
	defer conn.Close(context.Background())
	if got, err := WaitAdvisoryLocks(ctx, conn, cond, n); err != nil {
		t.Errorf("advisory locks where %s: %d (%v); want %d within %v", cond, got, err, n, lockWait)
	}
}

// Database creates a database of the test's own on the package's server
// (see Require and Server.CreateDatabase): advisory locks are per database,
// so tests running in parallel, each in its own, cannot see each other's
// locks. When the test ends it checks, with AwaitAdvisoryLocks, that no
// session holds or awaits an advisory lock there, then drops it.
func Database(t testing.TB) string {
	t.Helper()
	dsn := Require(t).CreateDatabase(t)
	t.Cleanup(func() { AwaitAdvisoryLocks(t, dsn, "true", 0) })
	return dsn
}

// AwaitWaiters waits until n advisory lock requests of q's database wait
// (pg_locks.granted is false), or fails t after 10s.
func AwaitWaiters(t testing.TB, q Querier, n int) {
	t.Helper()
	awaitLocks(t, q, "not granted", n)
}

// AwaitHolders waits until n advisory locks of q's database are granted (a
// session holding two counts twice), or fails t after 10s.
func AwaitHolders(t testing.TB, q Querier, n int) {
	t.Helper()
	awaitLocks(t, q, "granted", n)
}

func awaitLocks(t testing.TB, q Querier, cond string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	if got, err := WaitAdvisoryLocks(ctx, q, cond, n); err != nil {
		t.Fatalf("advisory locks where %s: %d (%v); want %d within %v", cond, got, err, n, lockWait)
	}
}

// AdvisoryLockPIDs returns the server process of each advisory lock of q's
// database that matches cond (see CountAdvisoryLocks), in ascending order: a
// session holding two locks shows twice. It fails t if the query fails.
func AdvisoryLockPIDs(t testing.TB, q Querier, cond string) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	var pids []int32
	err := q.QueryRow(ctx, `select coalesce(array_agg(pid order by pid), '{}') from pg_catalog.pg_locks
		where locktype = 'advisory' and pid is not null and (`+cond+`)
		and database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())`).Scan(&pids)
	if err != nil {
		t.Fatalf("sessions with advisory locks where %s: %v", cond, err)
	}
	return pids
}

// TerminateHolder ends the one session that holds advisory locks in q's
// database (see Terminate), without waiting for it to exit, and returns its
// pid. It fails t unless exactly one session holds any.
func TerminateHolder(t testing.TB, q Querier) int32 {
	t.Helper()
	pids := slices.Compact(AdvisoryLockPIDs(t, q, "granted"))
	if len(pids) != 1 {
		t.Fatalf("sessions holding advisory locks: %v; want one", pids)
	}
	Terminate(t, q, pids[0])
	return pids[0]
}
