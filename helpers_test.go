package advisorylock_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestMain provisions the test server; the runnable examples find it in
// DATABASE_URL.
func TestMain(m *testing.M) { pgtest.MainWithEnv(m, "DATABASE_URL") }

// twoPools returns two pools (see pgtest.NewPool) on a database of the
// test's own (see pgtest.Database): the subject's, and another process's.
func twoPools(t *testing.T) (pool, other *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.Database(t)
	return pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
}

// scopes are the two lock scopes, for tests run in each.
var scopes = []struct {
	label string
	opt   advisorylock.Option
}{{"session", nil}, {"transaction", advisorylock.TransactionScope()}}

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

// warmLock takes and releases m's lock once, or refuses to, so that the
// lock sessions m uses are open.
func warmLock(t *testing.T, m *advisorylock.Mutex) {
	t.Helper()
	l, err := m.TryLock(t.Context())
	if err == nil {
		err = l.Unlock(t.Context())
	}
	if err != nil && !errors.Is(err, advisorylock.ErrLocked) {
		t.Fatal(err)
	}
}
