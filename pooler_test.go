// Behind PgBouncer, for real (issue 7).
//
// These tests run the package against a real PgBouncer (pgtest.StartPgBouncer)
// in front of the test server. What was verified against PgBouncer 1.18:
//
//   - A client of PgBouncer is told, in BackendKeyData at start-up, a process ID
//     PgBouncer made up (random 32 bits, such as 2183457347), never the pid of
//     a server session, in every pool mode: PgBouncer routes cancel requests
//     itself, by that made-up key.
//   - In transaction mode clients take turns on the pool's server sessions: a
//     transaction keeps its session until it ends, and any statement outside
//     one runs on whichever session is free.
//   - In session mode a client keeps one server session until it disconnects;
//     the session is then reset with server_reset_query (DISCARD ALL), which
//     releases its session-level advisory locks.
//   - In statement mode PgBouncer refuses transaction blocks: it answers
//     FATAL "transaction blocks not allowed in statement pooling mode"
//     (SQLSTATE 08P01) and drops the client.
//   - Cancel requests sent to PgBouncer reach the server session running the
//     client's statement.
//   - pgx's default query mode (a statement cache of named prepared statements)
//     breaks through transaction pooling before PgBouncer 1.21: the next client
//     on a session finds the name taken (42P05), or a client finds its
//     statement missing on another session (26000). The harness's DSN sets
//     default_query_exec_mode=exec, as users of PgBouncer 1.18 must (or
//     simple_protocol); the library works in both modes
//     (TestPooler_guardInEveryPoolMode).
//
// How the guard works: every session-level lock statement carries the
// condition pg_backend_pid() = the pid the connection was told at start-up.
// Connected directly, the two are equal and the lock is taken in the same
// round trip. Through PgBouncer the condition is false, the statement returns
// no row without calling the lock function, and Lock, TryLock and WithLock fail
// with ErrPooler; nothing is locked and the connection goes back to the pool as
// it was. The check costs no round trip. Transaction-scoped locks need no
// guard: BEGIN and pg_advisory_xact_lock go out in one pipeline, so PgBouncer
// binds the transaction, and the lock in it, to one server session, and the
// commit or rollback that releases the lock runs there too.
//
// Its limits:
//
//   - Session mode is safe for session locks, but the guard cannot tell it from
//     transaction mode (the pid is made up there too): it refuses it as well,
//     and AllowPooler() is the way through. Verified: with AllowPooler, session
//     locks through session pooling exclude each other and clients connected
//     directly, unlock cleanly, and a client that disconnects while holding one
//     has it released by DISCARD ALL.
//   - A pooler that tells its clients the pid of a real server session (for
//     instance the first one it links them to) and then moves them to other
//     sessions would pass the guard whenever the lock statement happened to run
//     on that session: the guard trusts BackendKeyData. PgBouncer does not do
//     this.
//   - PgBouncer's made-up pid equals the real one with a chance of about one in
//     2^32 per connection; the guard then lets that one lock through.
//   - Statement mode cannot work with either scope: transaction-scoped locks
//     fail with PgBouncer's 08P01 error (not ErrPooler), session ones with
//     ErrPooler. With AllowPooler, a session lock there is as unsafe as in
//     transaction mode.
//   - AllowPooler through transaction pooling is unsafe, and
//     TestPooler_allowPoolerSharesLock and TestPooler_allowPoolerStrandsLock
//     show it deterministically: two clients on one server session both "hold"
//     the lock; an unlock that lands on another session fails while the lock
//     stays stranded, excluding everyone, on a session no client owns. Closing
//     the client connection (what Unlock does when the unlock cannot be
//     confirmed) does not end that session.

package advisorylock_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// poolerStart creates the test's database, starts PgBouncer in front of it,
// configured by cfg, and returns it with a pool connected to the database
// directly. PgBouncer stops when the test ends, after the pools made on its
// DSN have closed.
func poolerStart(t *testing.T, cfg pgtest.PgBouncerConfig) (*pgtest.PgBouncer, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.Database(t)
	b := pgtest.Require(t).StartPgBouncer(t, dsn, cfg)
	return b, pgtest.NewPool(t, dsn)
}

// poolerPool reads b's pool, failing t on error.
func poolerPool(t *testing.T, b *pgtest.PgBouncer) pgtest.PgBouncerPool {
	t.Helper()
	p, err := b.Pool(context.Background())
	if err != nil {
		t.Fatalf("PgBouncer pool: %v", err)
	}
	return p
}

// poolerAssertIdle fails t if a server session of b is still linked to a
// client (a transaction left open) or a client waits for one.
func poolerAssertIdle(t *testing.T, b *pgtest.PgBouncer) {
	t.Helper()
	if p := poolerPool(t, b); p.ServersActive != 0 || p.ClientsWaiting != 0 {
		t.Errorf("PgBouncer pool %+v; want no server session linked to a client and no client waiting", p)
	}
}

// poolerReleaseStranded ends the server sessions that hold advisory locks in
// the database of direct (which must connect directly) and waits until b has
// dropped them and the locks are gone: locks stranded behind a pooler have
// no client to release them.
func poolerReleaseStranded(t *testing.T, b *pgtest.PgBouncer, direct *pgxpool.Pool) {
	t.Helper()
	pids := pgtest.AdvisoryLockPIDs(t, direct, "granted")
	pgtest.Terminate(t, direct, slices.Compact(pids)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		open, err := b.ServerPIDs(ctx)
		if err != nil {
			t.Fatalf("PgBouncer servers: %v", err)
		}
		if !slices.ContainsFunc(open, func(p int32) bool { return slices.Contains(pids, p) }) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("PgBouncer still has server sessions %v of %v open", open, pids)
		case <-time.After(10 * time.Millisecond):
		}
	}
	pgtest.AwaitHolders(t, direct, 0)
}

// Transaction-scoped locks through transaction pooling exclude each other and
// locks taken directly: TryLock finds them held, Lock waits in the server and
// gets the lock when its holder commits.
func TestPooler_transactionScopeExcludes(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolSize: 3})
	const name = "pooler-tx"
	holder := advisorylock.New(pgtest.NewPool(t, b.DSN()), name, advisorylock.TransactionScope())
	other := advisorylock.New(pgtest.NewPool(t, b.DSN()), name, advisorylock.TransactionScope())
	directM := advisorylock.New(direct, name, advisorylock.TransactionScope())

	got := make(chan *advisorylock.Lock, 1)
	errc := make(chan error, 1)
	_, err := advisorylock.WithLock(t.Context(), holder, func(ctx context.Context) (struct{}, error) {
		l, _ := advisorylock.LockFromContext(ctx)
		tx := l.Tx()
		if tx == nil {
			t.Fatal("no transaction in WithLock's context")
		}
		// The lock lives in the server session of the lock's transaction.
		var txPID int32
		if err := tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&txPID); err != nil {
			t.Fatal(err)
		}
		if pids := pgtest.AdvisoryLockPIDs(t, direct, "granted"); len(pids) != 1 || pids[0] != txPID {
			t.Errorf("lock held by sessions %v; want the transaction's, %d", pids, txPID)
		}
		for _, m := range []*advisorylock.Mutex{other, directM} {
			if l, err := m.TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
				if err == nil {
					_ = l.Unlock(ctx)
				}
				t.Errorf("TryLock on %v while held: got %v; want ErrLocked", m, err)
			}
		}
		go func() {
			l, err := other.Lock(context.Background())
			errc <- err
			got <- l
		}()
		pgtest.AwaitWaiters(t, direct, 1)
		select {
		case err := <-errc:
			t.Fatalf("Lock returned while the lock was held: %v", err)
		default:
		}
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatalf("WithLock: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Lock after the holder committed: %v", err)
	}
	l := <-got
	if pids := pgtest.AdvisoryLockPIDs(t, direct, "granted"); len(pids) != 1 {
		t.Errorf("lock held by sessions %v after the hand-over; want one", pids)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	poolerAssertIdle(t, b)
}

// A wait for a transaction-scoped lock through PgBouncer ends with the
// server's lock_timeout, and with a cancel request, which PgBouncer delivers
// to the right server session: the connection survives both.
func TestPooler_transactionScopeTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolSize: 2})
	pool := pgtest.NewPool(t, b.DSN())
	warm(t, pool, 1)
	const name = "pooler-tx-wait"
	holder, err := advisorylock.New(direct, name).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := holder.Unlock(context.Background()); err != nil {
			t.Error(err)
		}
	}()

	const bound = 150 * time.Millisecond
	begin := time.Now()
	_, err = advisorylock.New(pool, name, advisorylock.TransactionScope(), advisorylock.WithTimeout(bound)).Lock(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with WithTimeout(%v) while held: got %v; want context.DeadlineExceeded", bound, err)
	}
	if took := time.Since(begin); took < bound {
		t.Errorf("the wait ended after %v; want at least %v", took, bound)
	}

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := advisorylock.New(pool, name, advisorylock.TransactionScope()).Lock(ctx)
		errc <- err
	}()
	pgtest.AwaitWaiters(t, direct, 1)
	cancel()
	err = <-errc
	var pgErr *pgconn.PgError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("cancelled Lock: got %v; want context.Canceled with the server's 57014", err)
	}
	pgtest.AwaitWaiters(t, direct, 0)
	if st := pool.Stat(); st.NewConnsCount() != 1 || st.TotalConns() != 1 {
		t.Errorf("pool opened %d connections and has %d; want the one it had (no reconnect)", st.NewConnsCount(), st.TotalConns())
	}
	poolerAssertIdle(t, b)
}

// Goroutines of several processes' pools, most of them behind PgBouncer with
// fewer server sessions than clients, increment a counter under a
// transaction-scoped lock with a read and a separate write: any two
// increments overlapping would lose one.
func TestPooler_transactionScopeCounter(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolSize: 2})
	ctx := t.Context()
	if _, err := direct.Exec(ctx, `create table counter (n int not null);
		insert into counter values (0);
		create table visits (via text not null, pid int not null)`); err != nil {
		t.Fatal(err)
	}
	const bouncerPools, goroutines, rounds = 5, 3, 12
	type client struct {
		pool *pgxpool.Pool
		via  string
	}
	clients := []client{{direct, "direct"}}
	for range bouncerPools {
		clients = append(clients, client{pgtest.NewPool(t, b.DSN()), "pgbouncer"})
	}

	begin := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*goroutines)
	for _, c := range clients {
		m := advisorylock.New(c.pool, "pooler-counter", advisorylock.TransactionScope())
		for range goroutines {
			wg.Go(func() {
				for range rounds {
					_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (struct{}, error) {
						l, _ := advisorylock.LockFromContext(ctx)
						tx := l.Tx()
						var n int
						if err := tx.QueryRow(ctx, "select n from counter").Scan(&n); err != nil {
							return struct{}{}, err
						}
						if _, err := tx.Exec(ctx, "update counter set n = $1", n+1); err != nil {
							return struct{}{}, err
						}
						_, err := tx.Exec(ctx, "insert into visits values ($1, pg_backend_pid())", c.via)
						return struct{}{}, err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := len(clients) * goroutines * rounds
	var n, sessions int
	if err := direct.QueryRow(ctx, "select n from counter").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := direct.QueryRow(ctx, "select count(distinct pid) from visits where via = 'pgbouncer'").Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	var bouncerConns int32
	for _, c := range clients[1:] {
		bouncerConns += c.pool.Stat().TotalConns()
	}
	t.Logf("%d increments in %v; %d client connections to PgBouncer ran on %d server sessions",
		want, time.Since(begin).Round(time.Millisecond), bouncerConns, sessions)
	if n != want {
		t.Errorf("counter = %d; want %d (lost updates)", n, want)
	}
	// The clients really shared server sessions.
	if sessions > b.PoolSize() || int(bouncerConns) <= sessions {
		t.Errorf("%d client connections ran on %d server sessions; want more clients than sessions, at most %d", bouncerConns, sessions, b.PoolSize())
	}
	poolerAssertIdle(t, b)
}

// Session-scoped locks through transaction pooling are refused with
// ErrPooler, whose message names the fixes; nothing is locked, and the
// connection goes back to the pool unharmed.
func TestPooler_sessionScopeRefused(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolSize: 2})
	pool := pgtest.NewPool(t, b.DSN())
	warm(t, pool, 1)
	password := pgtest.Require(t).Password()

	lock := func(ctx context.Context, m *advisorylock.Mutex) error {
		l, err := m.Lock(ctx)
		if err == nil {
			_ = l.Unlock(ctx)
		}
		return err
	}
	tryLock := func(ctx context.Context, m *advisorylock.Mutex) error {
		l, err := m.TryLock(ctx)
		if err == nil {
			_ = l.Unlock(ctx)
		}
		return err
	}
	tests := []struct {
		name  string
		names []string
		opts  []advisorylock.Option
		call  func(context.Context, *advisorylock.Mutex) error
	}{
		{"Lock", []string{"a"}, nil, lock},
		{"TryLock", []string{"a"}, nil, tryLock},
		{"WithLock", []string{"a"}, nil, nil},
		{"Lock WithTimeout", []string{"a"}, []advisorylock.Option{advisorylock.WithTimeout(time.Second)}, lock},
		{"shared Lock", []string{"a"}, []advisorylock.Option{advisorylock.Shared()}, lock},
		{"shared TryLock", []string{"a"}, []advisorylock.Option{advisorylock.Shared()}, tryLock},
		{"set Lock", []string{"a", "b", "c"}, nil, lock},
		{"set TryLock", []string{"a", "b", "c"}, nil, tryLock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := advisorylock.NewSet(pool, tt.names, tt.opts...)
			var err error
			if tt.call != nil {
				err = tt.call(t.Context(), m)
			} else {
				called := false
				_, err = advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) {
					called = true
					return 0, nil
				})
				if called {
					t.Error("WithLock ran its function")
				}
			}
			if !errors.Is(err, advisorylock.ErrPooler) {
				t.Fatalf("got %v; want ErrPooler", err)
			}
			// The advice (TransactionScope, AllowPooler) is in ErrPooler's
			// doc comment; the message says what happened, once.
			if got := err.Error(); !strings.Contains(got, "connection pooler") || strings.Count(got, "advisorylock:") != 1 {
				t.Errorf("error %q: want one prefix and the word pooler", got)
			}
			if password != "" && strings.Contains(err.Error(), password) {
				t.Error("the error shows the password")
			}
			if n := len(pgtest.AdvisoryLockPIDs(t, direct, "true")); n != 0 {
				t.Errorf("%d advisory locks in the server after the refusal; want 0", n)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections still acquired; want 0", n)
			}
			// The same Mutex connected directly works: the refusal is the
			// pooler's.
			if err := lock(t.Context(), advisorylock.NewSet(direct, tt.names, tt.opts...)); err != nil {
				t.Errorf("connected directly: %v", err)
			}
		})
	}
	if st := pool.Stat(); st.NewConnsCount() != 1 || st.TotalConns() != 1 {
		t.Errorf("pool opened %d connections and has %d; want the one it had", st.NewConnsCount(), st.TotalConns())
	}
	poolerAssertIdle(t, b)
}

// The guard refuses session locks in every pool mode, since PgBouncer makes up
// the pid in all of them, and in both query modes that work through
// PgBouncer 1.18. Transaction-scoped locks work in transaction and session
// mode; statement mode refuses them with PgBouncer's own error. Nothing is
// left locked.
func TestPooler_guardInEveryPoolMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{pgtest.PoolTransaction, pgtest.PoolSession, pgtest.PoolStatement} {
		t.Run(mode, func(t *testing.T) {
			// Lock sessions are server sessions of their own: in session mode each
			// needs a server session of the pooler's besides the pools'.
			b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolMode: mode, PoolSize: 8})
			for _, qmode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
				pool := pgtest.NewPool(t, b.DSN(), func(cfg *pgxpool.Config) { cfg.ConnConfig.DefaultQueryExecMode = qmode })
				for _, names := range [][]string{{"pooler-modes"}, {"pooler-modes", "pooler-modes-2"}} {
					m := advisorylock.NewSet(pool, names)
					if _, err := m.Lock(t.Context()); !errors.Is(err, advisorylock.ErrPooler) {
						t.Errorf("session Lock of %v in %s mode, %v: got %v; want ErrPooler", names, mode, qmode, err)
					}
					l, err := advisorylock.NewSet(pool, names, advisorylock.TransactionScope()).Lock(t.Context())
					switch {
					case mode != pgtest.PoolStatement && err != nil:
						t.Errorf("transaction-scoped Lock of %v in %s mode, %v: %v", names, mode, qmode, err)
					case mode != pgtest.PoolStatement:
						if err := l.Unlock(t.Context()); err != nil {
							t.Error(err)
						}
					default:
						var pgErr *pgconn.PgError
						if !errors.As(err, &pgErr) || pgErr.Code != "08P01" {
							t.Errorf("transaction-scoped Lock of %v in statement mode, %v: got %v; want PgBouncer's 08P01", names, qmode, err)
						}
					}
					pgtest.AwaitHolders(t, direct, 0)
				}
			}
		})
	}
}

// In session mode AllowPooler is safe: a client keeps its server session, so
// its locks exclude others and unlock cleanly, and when it disconnects
// PgBouncer's DISCARD ALL releases what it held, though the server session
// lives on.
func TestPooler_sessionModeAllowPooler(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolMode: pgtest.PoolSession, PoolSize: 3})
	const name = "pooler-session-mode"
	mA := advisorylock.New(pgtest.NewPool(t, b.DSN()), name, advisorylock.AllowPooler())
	mB := advisorylock.New(pgtest.NewPool(t, b.DSN()), name, advisorylock.AllowPooler())
	ctx := t.Context()

	l, err := mA.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock with AllowPooler in session mode: %v", err)
	}
	if _, err := mB.TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("TryLock of another client while held: got %v; want ErrLocked", err)
	}
	if _, err := advisorylock.New(direct, name).TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("TryLock connected directly while held: got %v; want ErrLocked", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	l, err = mB.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// A client that goes away holding a session lock.
	conn, err := pgx.Connect(ctx, b.DSN())
	if err != nil {
		t.Fatal(err)
	}
	var pid int32
	if err := conn.QueryRow(ctx, "select pg_backend_pid() from (select pg_advisory_lock(1)) l").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	pgtest.AwaitHolders(t, direct, 1)
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	pgtest.AwaitHolders(t, direct, 0)
	pids, err := b.ServerPIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, pid) {
		t.Errorf("server session %d gone (PgBouncer has %v); want it reset and kept", pid, pids)
	}
}

// The danger the guard prevents, shown deterministically: with AllowPooler
// through transaction pooling and a pool of one server session, two clients
// both get the same exclusive lock, since both lock calls run in that one
// session and session locks stack.
func TestPooler_allowPoolerSharesLock(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolSize: 1})
	const name = "pooler-danger-shared"
	mA := advisorylock.New(pgtest.NewPool(t, b.DSN()), name, advisorylock.AllowPooler())
	mB := advisorylock.New(pgtest.NewPool(t, b.DSN()), name, advisorylock.AllowPooler())
	t.Cleanup(func() { poolerReleaseStranded(t, b, direct) }) // runs before the pools' checks
	ctx := t.Context()

	lA, err := mA.Lock(ctx)
	if err != nil {
		t.Fatalf("client A: %v", err)
	}
	lB, err := mB.TryLock(ctx)
	if err != nil {
		t.Fatalf("client B: got %v; want the lock, wrongly granted a second time", err)
	}
	// The server sees one holder: PgBouncer's one session.
	servers, err := b.ServerPIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if holders := pgtest.AdvisoryLockPIDs(t, direct, "granted"); len(holders) != 1 || !slices.Equal(holders, servers) {
		t.Errorf("lock holders %v; want PgBouncer's one server session %v", holders, servers)
	}
	if _, err := advisorylock.New(direct, name).TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("TryLock connected directly: got %v; want ErrLocked", err)
	}
	// Each unlock runs in that session and takes one of the two grants away.
	for _, l := range []*advisorylock.Lock{lA, lB} {
		if err := l.Unlock(ctx); err != nil {
			t.Errorf("Unlock: %v", err)
		}
	}
	pgtest.AwaitHolders(t, direct, 0)
}

// The other danger, shown deterministically: with AllowPooler through
// transaction pooling, an unlock that runs in another server session than the
// lock did fails, and the lock stays stranded, excluding everyone, in a
// session no client owns; the next client on that session holds it without
// asking.
func TestPooler_allowPoolerStrandsLock(t *testing.T) {
	t.Parallel()
	b, direct := poolerStart(t, pgtest.PgBouncerConfig{PoolSize: 2})
	poolA, poolB := pgtest.NewPool(t, b.DSN()), pgtest.NewPool(t, b.DSN())
	const name = "pooler-danger-stranded"
	t.Cleanup(func() { poolerReleaseStranded(t, b, direct) }) // runs before the pools' checks
	ctx := t.Context()

	lA, err := advisorylock.New(poolA, name, advisorylock.AllowPooler()).Lock(ctx)
	if err != nil {
		t.Fatalf("client A: %v", err)
	}
	holders := pgtest.AdvisoryLockPIDs(t, direct, "granted")
	if len(holders) != 1 {
		t.Fatalf("lock holders %v; want one", holders)
	}
	// Client B begins a transaction: PgBouncer gives it the idle session, the
	// one where A's lock lives, before it would open a second one.
	tx, err := poolB.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	var txPID int32
	if err := tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&txPID); err != nil {
		t.Fatal(err)
	}
	if txPID != holders[0] {
		t.Fatalf("B's transaction runs in session %d; want %d, the only one PgBouncer had open", txPID, holders[0])
	}
	// A's unlock runs in a second session, which holds nothing.
	if err := lA.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("A's Unlock in another session: got %v; want ErrLockLost", err)
	}
	if got := pgtest.AdvisoryLockPIDs(t, direct, "granted"); !slices.Equal(got, holders) {
		t.Errorf("lock holders after A's unlock %v; want %v, stranded", got, holders)
	}
	// B holds the lock without asking: taking it again succeeds in that session.
	k1, k2, _ := advisorylock.KeyFromName(name).Pair()
	var again bool
	if err := tx.QueryRow(ctx, "select pg_try_advisory_lock($1, $2)", k1, k2).Scan(&again); err != nil || !again {
		t.Errorf("B's pg_try_advisory_lock = %t, %v; want true, as the session already holds it", again, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// No client holds anything now, yet the lock excludes everyone.
	if _, err := advisorylock.New(direct, name).TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("TryLock connected directly: got %v; want ErrLocked (stranded)", err)
	}
	if n := len(pgtest.AdvisoryLockPIDs(t, direct, "true")); n != 1 {
		t.Errorf("%d advisory lock rows; want the 1 stranded", n)
	}
}
