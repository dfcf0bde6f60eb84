package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

func TestLock_excludesAndReleases(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	ctx := t.Context()
	m := advisorylock.New(pool, "excl")

	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if _, err := m.TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
		t.Fatalf("TryLock while held: got %v; want ErrLocked", err)
	}
	// The lock shows in pg_locks under the npm package's key.
	k1, k2, _ := m.Key().Pair()
	var classid, objid uint32
	var objsubid int
	err = pool.QueryRow(ctx, `select classid::int8, objid::int8, objsubid from pg_locks where locktype = 'advisory' and granted
		and database = (select oid from pg_database where datname = current_database())`).Scan(&classid, &objid, &objsubid)
	if err != nil {
		t.Fatal(err)
	}
	if int32(classid) != k1 || int32(objid) != k2 || objsubid != 2 {
		t.Errorf("pg_locks shows (%d, %d, %d); want (%d, %d, 2)", int32(classid), int32(objid), objsubid, k1, k2)
	}
	select {
	case <-l.Done():
		t.Fatal("Done closed while held")
	default:
	}
	if err := l.Err(); err != nil {
		t.Errorf("Err while held = %v; want nil", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	<-l.Done()
	if err := l.Err(); !errors.Is(err, advisorylock.ErrNotHeld) {
		t.Errorf("Err after Unlock = %v; want ErrNotHeld", err)
	}
	l2, err := m.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUnlock_twice(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "twice", scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			l, err := m.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Err(); err != nil {
				t.Errorf("Err while held = %v; want nil", err)
			}
			if err := l.Unlock(t.Context()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-l.Done():
			default:
				t.Error("Done not closed after Unlock")
			}
			if err := l.Err(); !errors.Is(err, advisorylock.ErrNotHeld) || errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("Err after Unlock = %v; want ErrNotHeld", err)
			}
			if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrNotHeld) {
				t.Errorf("second Unlock = %v; want ErrNotHeld", err)
			}
			if err := l.Rollback(t.Context()); !errors.Is(err, advisorylock.ErrNotHeld) {
				t.Errorf("Rollback after Unlock = %v; want ErrNotHeld", err)
			}
		})
	}
}

func TestUnlock_concurrent(t *testing.T) {
	t.Parallel()
	m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "concurrent-unlock")
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() { errs <- l.Unlock(context.Background()) }()
	}
	var ok, notHeld int
	for range n {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, advisorylock.ErrNotHeld):
			notHeld++
		default:
			t.Errorf("Unlock: %v", err)
		}
	}
	if ok != 1 || notHeld != n-1 {
		t.Errorf("%d Unlocks succeeded and %d said ErrNotHeld; want 1 and %d", ok, notHeld, n-1)
	}
}

// A session lock pins one connection while held and gives it back after.
func TestPinConnection_pinsOneConnection(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "pin", advisorylock.PinConnection())
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.Stat().AcquiredConns(); got != 1 {
		t.Errorf("acquired connections while held = %d; want 1", got)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := pool.Stat()
	if st.AcquiredConns() != 0 || st.IdleConns() != 1 {
		t.Errorf("after Unlock: %d acquired, %d idle; want 0 and 1", st.AcquiredConns(), st.IdleConns())
	}
}

func TestLock_waitsInServer(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	m := advisorylock.New(pool, "wait")
	// The holder uses a pool of its own, as another process would: waiters
	// on the same pool queue in this process behind one server-side waiter.
	holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "wait").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *advisorylock.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := m.Lock(context.Background())
		errc <- err
		got <- l
	}()
	// The waiter shows in pg_locks as an ungranted request: it waits in the
	// server, not in a polling loop.
	pgtest.AwaitWaiters(t, pool, 1)
	var calls int
	if err := pool.QueryRow(t.Context(), `select count(*) from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory'
		and datname = current_database()`).Scan(&calls); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("sessions waiting on an advisory lock = %d; want 1", calls)
	}
	if err := holder.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if err := (<-got).Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestLock_timeout(t *testing.T) {
	// Serial: the server's lock_timeout must answer within the client's 250ms grace.
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		dsn := pgtest.Database(t)
		pool := pgtest.NewPool(t, dsn)
		warm(t, pool, 2)
		// Held from another pool, so the waits below happen in the server.
		holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "timeout").Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		const bound = 200 * time.Millisecond
		tests := []struct {
			name string
			opts []advisorylock.Option
			ctx  func() (context.Context, context.CancelFunc)
		}{
			{"WithTimeout", []advisorylock.Option{advisorylock.WithTimeout(bound)}, func() (context.Context, context.CancelFunc) {
				return context.WithCancel(t.Context())
			}},
			{"context deadline", nil, func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), bound)
			}},
			{"context deadline before WithTimeout", []advisorylock.Option{advisorylock.WithTimeout(time.Hour)}, func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), bound)
			}},
			{"WithTimeout before context deadline", []advisorylock.Option{advisorylock.WithTimeout(bound)}, func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), time.Hour)
			}},
		}
		for _, tt := range tests {
			t.Run(advisorylock.New(pool, "x", scope).Scope().String()+"/"+tt.name, func(t *testing.T) {
				m := advisorylock.New(pool, "timeout", append(tt.opts, scope)...)
				ctx, cancel := tt.ctx()
				defer cancel()
				newConns := pool.Stat().NewConnsCount()
				start := time.Now()
				l, err := m.Lock(ctx)
				elapsed := time.Since(start)
				if err == nil {
					l.Unlock(ctx)
					t.Fatal("Lock succeeded while held elsewhere")
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Lock = %v; want an error matching context.DeadlineExceeded", err)
				}
				// The server's lock_timeout ended the wait (SQLSTATE 55P03), not
				// the client's backstop, which would have cancelled or closed.
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
					t.Errorf("Lock error %v; want it to wrap the server's lock_timeout error 55P03", err)
				}
				if elapsed < bound-time.Millisecond {
					t.Errorf("timed out after %v; want at least the bound %v", elapsed, bound)
				}
				t.Logf("timed out %v after a %v bound", elapsed-bound, bound)
				if got := pool.Stat().NewConnsCount() - newConns; got != 0 {
					t.Errorf("the timeout opened %d new connections; want 0", got)
				}
			})
		}
		if err := holder.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// 100 timed-out acquisitions reuse the pool's connections: none is closed
// and none opened.
func TestLock_timeoutKeepsConnections(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		dsn := pgtest.Database(t)
		pool := pgtest.NewPool(t, dsn)
		warm(t, pool, 2)
		m := advisorylock.New(pool, "keep", advisorylock.WithTimeout(time.Millisecond), scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "keep").Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Unlock(context.Background())
			if _, err := m.Lock(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("first acquisition: %v; want context.DeadlineExceeded", err)
			}
			before, sessions := pool.Stat(), m.SessionsOpened()
			for i := range 100 {
				if _, err := m.Lock(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("acquisition %d: %v; want context.DeadlineExceeded", i, err)
				}
			}
			after := pool.Stat()
			if got := after.NewConnsCount() - before.NewConnsCount(); got != 0 {
				t.Errorf("100 timeouts opened %d new connections; want 0", got)
			}
			if got := m.SessionsOpened() - sessions; got != 0 {
				t.Errorf("100 timeouts opened %d lock sessions; want 0", got)
			}
			// Session locks wait on lock sessions; transaction-scoped ones on
			// a pooled connection each, but for an attempt whose 1ms ran out
			// while it queued in the process, which gives up without one.
			limit := int64(100)
			if m.Scope() == advisorylock.ScopeSession {
				limit = 0
			}
			if got := after.AcquireCount() - before.AcquireCount(); got > limit {
				t.Errorf("acquisitions from the pool: %d for 100 attempts; want at most %d", got, limit)
			}
		})
	}
}

func TestLock_cancel(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		dsn := pgtest.Database(t)
		pool := pgtest.NewPool(t, dsn)
		warm(t, pool, 3)
		m := advisorylock.New(pool, "cancel", scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "cancel").Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Unlock(context.Background())
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() {
				_, err := m.Lock(ctx)
				errc <- err
			}()
			pgtest.AwaitWaiters(t, pool, 1)
			newConns := pool.Stat().NewConnsCount()
			start := time.Now()
			cancel()
			err = <-errc
			t.Logf("cancelled wait returned after %v", time.Since(start))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Lock = %v; want context.Canceled", err)
			}
			if got := pool.Stat().NewConnsCount() - newConns; got != 0 {
				t.Errorf("the cancellation opened %d connections; want 0", got)
			}
			pgtest.AwaitWaiters(t, pool, 0)
		})
	}
}

// The lock_timeout that bounds a wait is never seen afterwards: not on the
// pooled connection, not by the statements run in a transaction-scoped lock.
func TestLock_timeoutSettingDoesNotLeak(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t), func(c *pgxpool.Config) {
		c.MaxConns = 1
		c.ConnConfig.RuntimeParams["lock_timeout"] = "7s"
	})
	ctx := t.Context()
	show := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) string {
		t.Helper()
		var s string
		if err := q.QueryRow(ctx, "show lock_timeout").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Pinned: the session lock is taken on the pooled connection itself.
	l, err := advisorylock.New(pool, "leak", advisorylock.WithTimeout(300*time.Millisecond), advisorylock.PinConnection()).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if got := show(pool); got != "7s" {
		t.Errorf("pooled connection's lock_timeout after a session lock = %q; want 7s", got)
	}
	tm := advisorylock.New(pool, "leak", advisorylock.WithTimeout(300*time.Millisecond), advisorylock.TransactionScope())
	got, err := advisorylock.WithLock(ctx, tm, func(ctx context.Context) (string, error) {
		l, _ := advisorylock.LockFromContext(ctx)
		return show(l.Tx()), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "7s" {
		t.Errorf("lock_timeout inside a transaction-scoped lock = %q; want 7s", got)
	}
	if got := show(pool); got != "7s" {
		t.Errorf("pooled connection's lock_timeout after a transaction lock = %q; want 7s", got)
	}
}

// Acquisition and release cost one round trip each, with or without a
// timeout, in both scopes.
func TestLock_roundTrips(t *testing.T) {
	t.Parallel()
	var w writeCounter
	pool := pgtest.NewPool(t, pgtest.Database(t), w.configure)
	ctx := t.Context()
	if err := pool.Ping(ctx); err != nil { // connect and warm up
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts []advisorylock.Option
	}{
		{"session", nil},
		{"session with timeout", []advisorylock.Option{advisorylock.WithTimeout(5 * time.Second)}},
		{"transaction", []advisorylock.Option{advisorylock.TransactionScope()}},
		{"transaction with timeout", []advisorylock.Option{advisorylock.TransactionScope(), advisorylock.WithTimeout(5 * time.Second)}},
		{"shared", []advisorylock.Option{advisorylock.Shared()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := advisorylock.New(pool, "rt", tt.opts...)
			for i := range 3 { // the first pass prepares statements
				start := w.n.Load()
				l, err := m.Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				locked := w.n.Load()
				if err := l.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					continue
				}
				if got := locked - start; got != 1 {
					t.Errorf("Lock took %d round trips; want 1", got)
				}
				if got := w.n.Load() - locked; got != 1 {
					t.Errorf("Unlock took %d round trips; want 1", got)
				}
			}
		})
	}
}

// The conflict matrix: shared excludes only exclusive, in and across both
// scopes.
func TestLock_conflictMatrix(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	type variant struct {
		mode  advisorylock.Option
		scope advisorylock.Option
	}
	var variants []variant
	for _, mode := range []advisorylock.Option{nil, advisorylock.Shared()} {
		for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
			variants = append(variants, variant{mode, scope})
		}
	}
	for _, a := range variants {
		for _, b := range variants {
			ma := advisorylock.New(pool, "matrix", a.mode, a.scope)
			mb := advisorylock.New(pool, "matrix", b.mode, b.scope)
			name := fmt.Sprintf("%s-%s/%s-%s", ma.Mode(), ma.Scope(), mb.Mode(), mb.Scope())
			t.Run(name, func(t *testing.T) {
				wantConflict := ma.Mode() == advisorylock.ModeExclusive || mb.Mode() == advisorylock.ModeExclusive
				la, err := ma.Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer la.Unlock(context.Background())
				lb, err := mb.TryLock(t.Context())
				switch {
				case wantConflict && !errors.Is(err, advisorylock.ErrLocked):
					t.Errorf("TryLock = %v; want ErrLocked", err)
				case !wantConflict && err != nil:
					t.Errorf("TryLock = %v; want the lock", err)
				}
				if err == nil {
					if err := lb.Unlock(t.Context()); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
}

// TryLock is answered by the server, not only by this process's queue for
// the lock, which is per pool: from a second pool, as from another process, a
// conflicting TryLock fails with ErrLocked while the lock is held, without
// taking it, and succeeds once it is released; shared holders on the two
// pools hold the lock together.
func TestTryLock_excludesAcrossPools(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	var writes writeCounter
	holderPool, otherPool := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn, writes.configure)
	for _, held := range []advisorylock.Option{nil, advisorylock.Shared()} {
		for _, mode := range []advisorylock.Option{nil, advisorylock.Shared()} {
			for _, scope := range scopes {
				holder := advisorylock.New(holderPool, "across", held)
				m := advisorylock.New(otherPool, "across", mode, scope.opt)
				conflict := holder.Mode() == advisorylock.ModeExclusive || m.Mode() == advisorylock.ModeExclusive
				t.Run(fmt.Sprintf("%s held, %s %s TryLock", holder.Mode(), m.Mode(), m.Scope()), func(t *testing.T) {
					ctx := t.Context()
					hl, err := holder.Lock(ctx)
					if err != nil {
						t.Fatal(err)
					}
					defer func() {
						if hl != nil {
							_ = hl.Unlock(context.Background())
						}
					}()
					// The sessions m uses are open: a write now is the
					// TryLock's question to the server.
					warmLock(t, m)
					before := writes.n.Load()
					l, err := m.TryLock(ctx)
					if got := writes.n.Load() - before; got < 1 {
						t.Errorf("TryLock wrote %d times to the server; want the server to answer", got)
					}
					if !conflict {
						if err != nil {
							t.Fatalf("TryLock while shared-held elsewhere = %v; want the lock", err)
						}
						pids := pgtest.AdvisoryLockPIDs(t, otherPool, "granted")
						if len(pids) != 2 || !slices.Contains(pids, hl.PID()) || !slices.Contains(pids, l.PID()) || hl.PID() == l.PID() {
							t.Errorf("sessions holding the lock: %v; want both holders, %d and %d", pids, hl.PID(), l.PID())
						}
						if err := l.Unlock(ctx); err != nil {
							t.Fatal(err)
						}
						return
					}
					if !errors.Is(err, advisorylock.ErrLocked) {
						if err == nil {
							_ = l.Unlock(ctx)
						}
						t.Fatalf("TryLock while held elsewhere = %v; want ErrLocked", err)
					}
					if pids := pgtest.AdvisoryLockPIDs(t, otherPool, "true"); !slices.Equal(pids, []int32{hl.PID()}) {
						t.Errorf("sessions holding or awaiting the lock after the refusal: %v; want the holder's alone, %d", pids, hl.PID())
					}
					if err := hl.Unlock(ctx); err != nil {
						t.Fatal(err)
					}
					hl = nil
					l, err = m.TryLock(ctx)
					if err != nil {
						t.Fatalf("TryLock after the holder's Unlock = %v; want the lock", err)
					}
					if err := l.Unlock(ctx); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// Explicit keys use the bigint and int4-pair spaces, which never conflict.
func TestNewWithKey(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	big := advisorylock.NewWithKey(pool, advisorylock.Int64Key(7))
	pair := advisorylock.NewWithKey(pool, advisorylock.PairKey(0, 7))
	lb, err := big.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Unlock(context.Background())
	lp, err := pair.TryLock(ctx)
	if err != nil {
		t.Fatalf("PairKey(0, 7) while Int64Key(7) is held: %v; want the lock", err)
	}
	defer lp.Unlock(context.Background())
	// A raw pgx session sees the bigint key as held.
	var ok bool
	if err := pool.QueryRow(ctx, "select pg_try_advisory_lock(7)").Scan(&ok); err != nil || ok {
		t.Errorf("pg_try_advisory_lock(7) from another session = %v, %v; want false", ok, err)
	}
	// And the name maps to the npm package's pair.
	named := advisorylock.New(pool, "test-lock")
	ln, err := named.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Unlock(context.Background())
	if err := pool.QueryRow(ctx, "select pg_try_advisory_lock(-107789403, -1898803861)").Scan(&ok); err != nil || ok {
		t.Errorf("pg_try_advisory_lock(-107789403, -1898803861) while \"test-lock\" is held = %v, %v; want false", ok, err)
	}
}

// Hammers the cancel race: a waiter's short lock_timeout fires just as the
// holder releases, so the server sometimes grants the lock to a waiter that
// reports a timeout. The library must release such grants before the
// connection goes back to the pool.
func TestLock_cancelRace(t *testing.T) {
	// Serial: the race is a matter of timing (a release around a 2ms timeout).
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 2 })
	holderPool := pgtest.NewPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 1 })
	ctx := t.Context()
	waiter := advisorylock.New(pool, "race", advisorylock.WithTimeout(2*time.Millisecond))
	holder := advisorylock.New(holderPool, "race")
	probe := advisorylock.New(holderPool, "race")
	iterations := 2000
	if testing.Short() {
		iterations = 200
	}
	var timeouts, acquired int
	for i := range iterations {
		h, err := holder.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Release right around the waiter's timeout: the point of the test
			// is the timing, not a synchronisation.
			time.Sleep(time.Duration(1000+i%7*250) * time.Microsecond)
			if err := h.Unlock(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		l, err := waiter.Lock(ctx)
		wg.Wait()
		switch {
		case err == nil:
			acquired++
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		case errors.Is(err, context.DeadlineExceeded):
			timeouts++
			// Whatever the server granted with the timeout is gone: the lock
			// is free at once.
			p, err := probe.TryLock(ctx)
			if err != nil {
				t.Fatalf("iteration %d: the lock is not free after a timed-out acquisition: %v", i, err)
			}
			if err := p.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("iteration %d: %v", i, err)
		}
	}
	raced := waiter.RacedGrants()
	t.Logf("%d iterations: %d acquired, %d timed out, %d of those were granted anyway and released", iterations, acquired, timeouts, raced)
	if timeouts == 0 {
		t.Error("no acquisition timed out; the test did not exercise the race")
	}
}

func TestWithLock_returnsValue(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "value", scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			got, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
				l, ok := advisorylock.LockFromContext(ctx)
				if !ok || l.Mutex() != m {
					t.Fatal("LockFromContext: no lock of m in fn's context")
				}
				if isTx, want := l.Tx() != nil, m.Scope() == advisorylock.ScopeTransaction; isTx != want {
					t.Errorf("the lock in fn's context has a transaction: %v; want %v", isTx, want)
				}
				return 42, nil
			})
			if got != 42 || err != nil {
				t.Errorf("WithLock = %d, %v; want 42, nil", got, err)
			}
		})
	}
}

func TestWithLock_fnErrorReleases(t *testing.T) {
	t.Parallel()
	m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "fn-error")
	boom := errors.New("boom")
	got, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (string, error) {
		return "partial", boom
	})
	if got != "partial" || err != boom {
		t.Errorf("WithLock = %q, %v; want \"partial\", boom (unwrapped)", got, err)
	}
	l, err := m.TryLock(t.Context())
	if err != nil {
		t.Fatalf("lock not released after fn's error: %v", err)
	}
	l.Unlock(t.Context())
}

func TestWithLock_panicReleases(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "panic", scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			func() {
				defer func() {
					if r := recover(); r != "boom" {
						t.Errorf("recovered %v; want the panic to go on as \"boom\"", r)
					}
				}()
				advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
					panic("boom")
				})
			}()
			l, err := m.TryLock(t.Context())
			if err != nil {
				t.Fatalf("lock not released after a panic: %v", err)
			}
			l.Unlock(t.Context())
		})
	}
}

func TestWithLock_goexitReleases(t *testing.T) {
	t.Parallel()
	m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "goexit")
	done := make(chan struct{})
	go func() {
		defer close(done)
		advisorylock.WithLock(context.Background(), m, func(ctx context.Context) (int, error) {
			runtime.Goexit()
			return 0, nil
		})
	}()
	<-done
	l, err := m.TryLock(t.Context())
	if err != nil {
		t.Fatalf("lock not released after runtime.Goexit: %v", err)
	}
	l.Unlock(t.Context())
}

// fn's writes through the lock's transaction commit with it on success and
// roll back with it on error or panic.
func TestWithLock_transactionWrites(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	if _, err := pool.Exec(ctx, "create table runs (name text primary key)"); err != nil {
		t.Fatal(err)
	}
	m := advisorylock.New(pool, "tx-writes", advisorylock.TransactionScope())
	insert := func(name string, fail error, panics bool) func(context.Context) (struct{}, error) {
		return func(ctx context.Context) (struct{}, error) {
			l, _ := advisorylock.LockFromContext(ctx)
			tx := l.Tx()
			if tx == nil {
				t.Fatal("the lock in fn's context has no transaction")
			}
			if _, err := tx.Exec(ctx, "insert into runs values ($1)", name); err != nil {
				return struct{}{}, err
			}
			if panics {
				panic("boom")
			}
			return struct{}{}, fail
		}
	}
	if _, err := advisorylock.WithLock(ctx, m, insert("ok", nil, false)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := advisorylock.WithLock(ctx, m, insert("failed", boom, false)); err != boom {
		t.Fatalf("WithLock = %v; want boom", err)
	}
	func() {
		defer func() { recover() }()
		advisorylock.WithLock(ctx, m, insert("panicked", nil, true))
	}()
	rows, err := pool.Query(ctx, "select name from runs order by name")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names) != "[ok]" {
		t.Errorf("committed rows = %v; want [ok]", names)
	}
}

// The transaction handed to fn cannot be ended by fn, and cannot be used once
// the lock is released.
func TestLock_txManaged(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	l, err := advisorylock.New(pool, "managed", advisorylock.TransactionScope()).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx := l.Tx()
	if err := tx.Commit(ctx); !errors.Is(err, advisorylock.ErrTxManaged) {
		t.Errorf("Commit = %v; want ErrTxManaged", err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, advisorylock.ErrTxManaged) {
		t.Errorf("Rollback = %v; want ErrTxManaged", err)
	}
	if _, err := tx.Exec(ctx, "select 1"); err != nil {
		t.Errorf("Exec in the lock's transaction: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "select 1"); !errors.Is(err, advisorylock.ErrNotHeld) {
		t.Errorf("Exec after Unlock = %v; want ErrNotHeld", err)
	}
	if advisorylock.New(pool, "session").Scope() != advisorylock.ScopeSession {
		t.Error("default scope is not session")
	}
}

// A failed commit (the transaction had an error) still releases the lock and
// says so.
func TestUnlock_commitRolledBack(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	m := advisorylock.New(pool, "rolled-back", advisorylock.TransactionScope())
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Tx().Exec(ctx, "select 1/0"); err == nil {
		t.Fatal("select 1/0 succeeded")
	}
	if err := l.Unlock(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("Unlock = %v; want pgx.ErrTxCommitRollback", err)
	}
	l2, err := m.TryLock(ctx)
	if err != nil {
		t.Fatalf("lock not released: %v", err)
	}
	l2.Unlock(ctx)
}
