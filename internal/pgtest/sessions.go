package pgtest

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A Querier runs a query returning one row: a *pgxpool.Pool, a *pgx.Conn or
// a *pgxpool.Conn.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CountAdvisoryLocks returns how many advisory locks (held or awaited) of the
// database q is connected to match cond, an SQL condition on pg_locks such as
// "granted", "not granted" or "true".
func CountAdvisoryLocks(ctx context.Context, q Querier, cond string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `select count(*) from pg_catalog.pg_locks where locktype = 'advisory' and (`+cond+`)
		and database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())`).Scan(&n)
	return n, err
}

// WaitAdvisoryLocks polls CountAdvisoryLocks every 5ms until it returns n, and
// returns the last count. It fails with the query's error, or with ctx's when
// ctx ends first.
func WaitAdvisoryLocks(ctx context.Context, q Querier, cond string, n int) (int, error) {
	for {
		got, err := CountAdvisoryLocks(ctx, q, cond)
		if err != nil || got == n {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Terminate ends the server sessions pids (pg_terminate_backend, without
// waiting for them to exit), from a session of q's. It fails t if a session
// is not there to end.
func Terminate(t testing.TB, q Querier, pids ...int32) {
	t.Helper()
	for _, pid := range pids {
		var ok bool
		if err := q.QueryRow(context.Background(), "select pg_catalog.pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v; want true", pid, ok, err)
		}
	}
}

// Proxy returns a Proxy (see NewProxy) in front of s, closed by a cleanup
// registered on t. It fails t if the proxy cannot listen.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := NewProxy(net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())))
	if err != nil {
		t.Fatalf("pgtest: proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ViaProxy returns a configure function for NewPool that makes the pool's
// connections go through p: every one, or with firstOnly only the first one
// dialled from the configuration, the others directly. Copies of the
// configuration (pgxpool.Pool.Config) share the count, so with firstOnly
// exactly one connection among the pool and its copies goes through p.
func ViaProxy(p *Proxy, firstOnly bool) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		var d net.Dialer
		var n atomic.Int32
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !firstOnly || n.Add(1) == 1 {
				addr = p.Addr()
			}
			return d.DialContext(ctx, network, addr)
		}
	}
}
