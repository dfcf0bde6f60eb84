package advisorylock_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestMain provisions the test server; the runnable examples find it in
// DATABASE_URL.
func TestMain(m *testing.M) { pgtest.MainWithEnv(m, "DATABASE_URL") }

// testDB creates a database of the test's own (advisory locks are per
// database, so tests cannot see each other's locks) and checks, when the test
// ends, that no session holds an advisory lock in it.
func testDB(t *testing.T) string {
	t.Helper()
	dsn := pgtest.Require(t).CreateDatabase(t)
	t.Cleanup(func() { assertNoAdvisoryLocks(t, dsn) })
	return dsn
}

// newPool returns a pool on dsn (4 connections unless configure says
// otherwise), checked when the test ends: see pgtest.NewPool.
func newPool(t *testing.T, dsn string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t, dsn, configure...)
}

// assertNoAdvisoryLocks fails t if any session holds or awaits an advisory
// lock in dsn's database, once sessions being torn down have gone (awaited up
// to 10s).
func assertNoAdvisoryLocks(t *testing.T, dsn string) {
	t.Helper()
	pgtest.AwaitAdvisoryLocks(t, dsn, "true", 0)
}

// awaitWaiters waits until n sessions of dsn's database wait (granted =
// false) for an advisory lock, or fails t after 10s.
func awaitWaiters(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	awaitLocks(t, pool, "not granted", n)
}

// awaitHolders waits until n advisory locks of the database are granted.
func awaitHolders(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	awaitLocks(t, pool, "granted", n)
}

func awaitLocks(t *testing.T, pool *pgxpool.Pool, cond string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got int
	for {
		err := pool.QueryRow(ctx, `select count(*) from pg_locks where locktype = 'advisory' and `+cond+`
			and database = (select oid from pg_database where datname = current_database())`).Scan(&got)
		if err != nil {
			t.Fatalf("awaiting %d advisory locks %s: %v", n, cond, err)
		}
		if got == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("advisory locks %s: got %d; want %d", cond, got, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// writeCounter counts the writes to the server on a pool's connections:
// pgx sends each round trip's messages in one write.
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

// backendPID returns the server process of a session-scoped lock's
// connection, as seen from the lock's own holder list in pg_locks.
func lockHolderPIDs(t *testing.T, pool *pgxpool.Pool) []int32 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `select pid from pg_locks where locktype = 'advisory' and granted
		and database = (select oid from pg_database where datname = current_database()) order by pid`)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// terminate ends the server sessions pids from a session of its own.
func terminate(t *testing.T, pool *pgxpool.Pool, pids ...int32) {
	t.Helper()
	for _, pid := range pids {
		var ok bool
		if err := pool.QueryRow(context.Background(), "select pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
		}
	}
}

// warm opens n connections in pool, so that tests counting new connections
// count only those their subject opens.
func warm(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	var conns []*pgxpool.Conn
	for range n {
		c, err := pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
}
