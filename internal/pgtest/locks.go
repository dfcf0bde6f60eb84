package pgtest

import (
	"context"
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

// AssertPoolClean fails t if a connection of pool is still acquired or an
// idle one holds an advisory lock.
func AssertPoolClean(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired from the pool; want 0", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	for _, c := range pool.AcquireAllIdle(ctx) {
		var n int
		if err := c.QueryRow(ctx, "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()").Scan(&n); err != nil {
			t.Errorf("checking a pooled connection: %v", err)
		} else if n != 0 {
			t.Errorf("a pooled connection holds %d advisory locks; want 0", n)
		}
		c.Release()
	}
}

// AwaitAdvisoryLocks waits until n advisory locks (held or awaited) of dsn's
// database match cond, an SQL condition on pg_locks such as "granted" or
// "true", and fails t if that does not happen within 10s. It uses a
// connection of its own.
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
	var got int
	for {
		err := conn.QueryRow(ctx, `select count(*) from pg_locks where locktype = 'advisory' and (`+cond+`)
			and database = (select oid from pg_database where datname = current_database())`).Scan(&got)
		if err != nil {
			t.Errorf("counting advisory locks where %s: %v", cond, err)
			return
		}
		if got == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("advisory locks where %s: %d after %v; want %d", cond, got, lockWait, n)
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}
