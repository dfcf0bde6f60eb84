package pgwire_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// TestMain provisions the test server, checks for leaked goroutines, and
// exports the server's DSN for the examples.
func TestMain(m *testing.M) { pgtest.MainWithEnv(m, "PGWIRE_TEST_DSN") }

// waitBound bounds every wait of a test for a condition.
const waitBound = 10 * time.Second

// testDB creates a database of the test's own (advisory locks are per
// database) and returns its DSN and a config for it.
func testDB(t testing.TB) (string, *pgconn.Config) {
	t.Helper()
	dsn := pgtest.Require(t).CreateDatabase(t)
	return dsn, parseConfig(t, dsn)
}

func parseConfig(t testing.TB, dsn string) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// viaProxy returns a proxy to the test server and points cfg at it.
func viaProxy(t testing.TB, cfg *pgconn.Config) *pgtest.Proxy {
	t.Helper()
	srv := pgtest.Require(t)
	proxy, err := pgtest.NewProxy(net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	cfg.Host, cfg.Port, cfg.Fallbacks = "127.0.0.1", uint16(proxy.Port()), nil
	return proxy
}

// connect opens a session closed when the test ends, which checks that Close
// returns promptly.
func connect(t testing.TB, cfg *pgconn.Config, opts pgwire.Options) *pgwire.Session {
	t.Helper()
	s, err := pgwire.Connect(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled in cleanups.
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// otherConn opens a second session, to hold locks, look at pg_locks and end
// sessions, closed when the test ends.
func otherConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// exec runs sql on conn or fails t.
func exec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// do runs sql on s and returns its rows' first values, failing t on any
// error, the statement's included.
func do(t testing.TB, s *pgwire.Session, sql string) []string {
	t.Helper()
	res, err := s.Do(t.Context(), sql)
	if err != nil {
		t.Fatalf("Do(%q): %v", sql, err)
	}
	if res.Err != nil {
		t.Fatalf("Do(%q): statement error %v", sql, res.Err)
	}
	var firsts []string
	for _, row := range res.Rows {
		firsts = append(firsts, string(row[0]))
	}
	return firsts
}

// await polls cond until it holds, or fails t after waitBound.
func await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up awaiting %s after %v", what, waitBound)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// awaitWaiting waits until the session pid waits for an advisory lock.
func awaitWaiting(t testing.TB, conn *pgx.Conn, pid uint32) {
	t.Helper()
	await(t, fmt.Sprintf("session %d waiting for a lock", pid), func() bool {
		var n int
		err := conn.QueryRow(t.Context(), `select count(*) from pg_catalog.pg_locks
			where locktype = 'advisory' and not granted and pid = $1`, int64(pid)).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
}

// awaitClosed waits until s.Done is closed, or fails t after waitBound.
func awaitClosed(t testing.TB, s *pgwire.Session) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(waitBound):
		t.Fatalf("session still alive after %v", waitBound)
	}
}

// answer is what Send passes to its callback.
type answer struct {
	res pgwire.Result
	err error
}

// receive returns the next answer from ch, or fails t after waitBound.
func receive(t testing.TB, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(waitBound):
		t.Fatalf("no answer after %v", waitBound)
		return answer{}
	}
}

// sqlState returns err's SQLSTATE, or "" if err is no *pgconn.PgError.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr != nil {
		return pgErr.Code
	}
	return ""
}
