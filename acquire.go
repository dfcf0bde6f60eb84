package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// SQLSTATEs the lock path tells apart.
const (
	sqlstateLockNotAvailable = "55P03" // lock_timeout fired
	// sqlstateOutOfSharedMemory: the server's lock table is full.
	sqlstateOutOfSharedMemory = "53200"
)

// lock is Lock and TryLock: validation, hooks, then acquire.
func (m *Mutex) lock(ctx context.Context, try bool) (*Lock, error) {
	if m == nil {
		return nil, errNilMutex
	}
	if m.err != nil {
		return nil, m.errorf(tryOp(try), m.err)
	}
	if m.hooks == nil {
		l, err := m.acquire(ctx, try)
		if err == nil {
			l.hold(ctx)
		}
		return l, err
	}
	return m.lockHooked(ctx, try)
}

// lockHooked is lock with hooks. A hook that panics while a lock is held
// releases it (by closing its connection) before the panic goes on.
func (m *Mutex) lockHooked(ctx context.Context, try bool) (*Lock, error) {
	start := time.Now()
	actx := m.hooks.AcquireStart(ctx, m, AcquireStartData{Try: try, Timeout: m.bound(ctx, start)})
	l, err := m.acquireReported(actx, start, try)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			l.abandon()
		}
	}()
	l.acquired = time.Now()
	l.hold(m.hooks.HoldStart(ctx, l, HoldStartData{Wait: l.acquired.Sub(start), AcquireContext: actx, Token: l.token}))
	started = true
	return l, nil
}

// acquireReported is acquire followed, on every exit path, by AcquireEnd.
func (m *Mutex) acquireReported(actx context.Context, start time.Time, try bool) (l *Lock, err error) {
	err = errPanicked // what AcquireEnd reports if acquire panics
	defer func() {
		reported := false
		defer func() {
			if !reported && l != nil {
				l.abandon()
			}
		}()
		m.hooks.AcquireEnd(actx, m, AcquireEndData{Outcome: outcomeOf(err), Wait: time.Since(start), Lock: l, Token: l.Token(), Err: err})
		reported = true
	}()
	return m.acquire(actx, try)
}

var errPanicked = errors.New("advisorylock: panic during acquisition")

// outcomeOf classifies an acquisition error for hooks.
func outcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeAcquired
	case errors.Is(err, ErrLocked):
		return OutcomeBusy
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	case errors.Is(err, context.Canceled):
		return OutcomeCanceled
	default:
		return OutcomeError
	}
}

// bound returns the effective bound on a wait starting at now: the earlier of
// WithTimeout and ctx's deadline; 0 for none, negative when already passed.
func (m *Mutex) bound(ctx context.Context, now time.Time) time.Duration {
	bound := m.cfg.timeout
	if dl, ok := ctx.Deadline(); ok {
		if rest := dl.Sub(now); bound == 0 || rest < bound {
			bound = rest
			if bound == 0 {
				bound = -1
			}
		}
	}
	return bound
}

// acquire takes the lock on a connection of its own, after queueing in this
// process behind other goroutines that want the same lock (see gate).
func (m *Mutex) acquire(ctx context.Context, try bool) (*Lock, error) {
	op := tryOp(try)
	if err := ctx.Err(); err != nil {
		return nil, m.errorf(op, err)
	}
	var bound time.Duration
	if !try {
		if bound = m.bound(ctx, time.Now()); bound < 0 {
			return nil, m.errorf(op, context.DeadlineExceeded)
		}
	}
	if m.fence != nil {
		var err error
		if bound, err = m.ensureFencing(ctx, bound); err != nil {
			return nil, m.errorf(op, err)
		}
	}
	if (try && m.cfg.mode == ModeShared) || len(m.keys) > 1 {
		// A shared TryLock never waits, so it has no wait to coalesce. Sets
		// overlap other sets and single keys in ways a per-key queue cannot
		// follow: they wait in the server.
		return m.take(ctx, bound, try)
	}
	var deadline time.Time
	if bound > 0 {
		deadline = time.Now().Add(bound)
	}
	g, err := m.enter(ctx, deadline, try)
	if err != nil {
		return nil, m.errorf(op, err)
	}
	if bound > 0 {
		if bound = time.Until(deadline); bound <= 0 {
			m.leave(g)
			return nil, m.errorf(op, context.DeadlineExceeded)
		}
	}
	left := false
	defer func() {
		if !left {
			m.leave(g) // a RetryHook panicked
		}
	}()
	l, err := m.take(ctx, bound, try)
	left = true
	if err != nil || m.cfg.mode == ModeShared {
		m.leave(g)
	} else {
		l.gate = g
	}
	return l, err
}

// tryOp names the operation: "lock" or "trylock".
func tryOp(try bool) string {
	if try {
		return "trylock"
	}
	return "lock"
}

// take takes the lock where m keeps its locks: on lock sessions, or on a
// pooled connection. A wait that loses its connection before the grant starts
// again (see retry.go).
func (m *Mutex) take(ctx context.Context, bound time.Duration, try bool) (*Lock, error) {
	if try {
		return m.takeOnce(ctx, bound, true)
	}
	return m.takeRetrying(ctx, bound)
}

// takeOnce is one attempt of take. The error of an attempt whose connection
// ended before the grant is marked (lostConn).
func (m *Mutex) takeOnce(ctx context.Context, bound time.Duration, try bool) (_ *Lock, err error) {
	if m.fence != nil {
		defer func() { m.fence.forget(err) }()
	}
	if m.sessions != nil {
		return m.acquireOnSessions(ctx, bound, try)
	}
	return m.acquireConn(ctx, bound, try)
}

// acquireOnSessions takes a session lock on a lock session: first on a shared
// one, without waiting (one round trip), then, when the lock is busy and try
// is not set, waiting on a session of its own.
func (m *Mutex) acquireOnSessions(ctx context.Context, bound time.Duration, try bool) (*Lock, error) {
	op := tryOp(try)
	var deadline time.Time
	if bound > 0 {
		deadline = time.Now().Add(bound)
	}
	set := m.sessions
	s, conflict, err := set.route(ctx, m.keys, m.cfg.mode)
	if err != nil {
		return nil, m.errorf(op, err)
	}
	if !conflict {
		if s.w.ParameterStatus("in_hot_standby") == "on" {
			m.settleTry(s, nil, nil)
			return nil, m.errorf(op, ErrStandby)
		}
		l, ok, err := m.tryOn(ctx, s)
		if err != nil {
			if errors.Is(err, pgwire.ErrClosed) && ctx.Err() == nil {
				err = lostConn(err) // the session ended
			}
			return nil, m.errorf(op, err)
		}
		if ok {
			return l, nil
		}
	}
	if try {
		return nil, m.errorf(op, ErrLocked)
	}
	if bound > 0 {
		if bound = time.Until(deadline); bound <= 0 {
			return nil, m.errorf(op, context.DeadlineExceeded)
		}
	}
	ws, err := set.waitSession(ctx)
	if err != nil {
		return nil, m.errorf(op, err)
	}
	if ws.w.ParameterStatus("in_hot_standby") == "on" {
		set.mu.Lock()
		ws.waiting = false
		ws.settle()
		set.mu.Unlock()
		return nil, m.errorf(op, ErrStandby)
	}
	return m.waitOn(ctx, ws, bound)
}

// acquireConn takes the lock on a pooled connection, which stays pinned to the
// returned Lock.
func (m *Mutex) acquireConn(ctx context.Context, bound time.Duration, try bool) (*Lock, error) {
	conn, err := m.pool.Acquire(ctx)
	if err != nil {
		return nil, m.errorf(tryOp(try), fmt.Errorf("acquiring a connection: %w", err))
	}
	pg := conn.Conn().PgConn()
	// PostgreSQL 14 and later report in_hot_standby at connection start and on
	// promotion: the check costs no round trip.
	if pg.ParameterStatus("in_hot_standby") == "on" {
		conn.Release()
		return nil, m.errorf(tryOp(try), ErrStandby)
	}
	l := newLock(m, conn)
	var ok bool
	if m.cfg.scope == ScopeTransaction {
		ok, err = m.acquireTx(ctx, l, bound, try)
	} else {
		ok, err = m.acquireSession(ctx, conn, bound, try, &l.token)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, m.errorf("trylock", ErrLocked)
	}
	return l, nil
}

// acquireSession runs the session-level lock call, and with fencing reads the
// token into token. On failure it leaves conn released or destroyed, never
// held.
func (m *Mutex) acquireSession(ctx context.Context, conn *pgxpool.Conn, bound time.Duration, try bool, token *int64) (ok bool, err error) {
	c := conn.Conn()
	args := m.sql.args
	if !m.cfg.allowPooler {
		args = m.withArgs(int64(c.PgConn().PID()))
	}
	err, interrupted := runInterruptible(ctx, c.PgConn(), bound, m.grace(), func(qctx context.Context) error {
		var tag pgconn.CommandTag
		var err error
		sql := m.sql.lock
		switch {
		case try:
			return m.scanTry(c.QueryRow(qctx, m.sql.try, args...), &ok, token)
		case bound > 0 && bound <= maxLockTimeout:
			// args is m.sql.args or a slice of this call's own; append
			// never writes into m.sql.args (see withArgs).
			sql, args = m.sql.lockTimeout, append(args, timeoutMillis(bound))
		}
		if m.fence != nil {
			// No row (pgx.ErrNoRows) when the pooler guard kept the lock
			// calls from running.
			err = c.QueryRow(qctx, sql, args...).Scan(token)
			ok = err == nil
			return err
		}
		tag, err = c.Exec(qctx, sql, args...)
		// The lock call returns one row, or none when the pooler guard
		// kept it from running.
		ok = err == nil
		if ok && tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// The backend is not the connection's own: nothing was locked.
		conn.Release()
		return false, m.errorf(tryOp(try), ErrPooler)
	}
	if err != nil {
		if interrupted == nil && c.IsClosed() {
			err = lostConn(err) // the session ended: nothing is held
		}
		m.releaseAfterFailure(conn)
		return false, m.waitError(tryOp(try), err, interrupted)
	}
	switch {
	case !ok && m.sql.n > 1:
		// Some of the set's keys may have been taken.
		m.releaseAfterFailure(conn)
	case !ok:
		// pg_try_advisory_lock said no: nothing is held.
		conn.Release()
	}
	return ok, nil
}

// acquireTx begins the lock's transaction and takes the transaction-level
// lock, in one round trip (BEGIN and the lock call in one batch). On failure it
// leaves l.conn released or destroyed.
func (m *Mutex) acquireTx(ctx context.Context, l *Lock, bound time.Duration, try bool) (ok bool, err error) {
	c := l.conn.Conn()
	err, interrupted := runInterruptible(ctx, c.PgConn(), bound, m.grace(), func(qctx context.Context) error {
		b := &pgx.Batch{}
		b.BeginTx(pgx.TxOptions{})
		switch {
		case try:
			b.Queue(m.sql.xactTry, m.sql.args...).QueryRow(func(row pgx.Row) error { return m.scanTry(row, &ok, &l.token) })
		case bound > 0 && bound <= maxLockTimeout:
			q := b.Queue(m.sql.xactLockTimeout, m.withArgs(timeoutMillis(bound))...)
			if m.fence != nil {
				// The restored setting, then the token.
				q.QueryRow(func(row pgx.Row) error { return row.Scan(nil, &l.token) })
			}
			ok = true
		default:
			q := b.Queue(m.sql.xactLock, m.sql.args...)
			if m.fence != nil {
				q.QueryRow(func(row pgx.Row) error { return row.Scan(&l.token) })
			}
			ok = true
		}
		br := c.SendBatch(qctx, b)
		err := br.Close()
		l.tx = br.Tx()
		return err
	})
	if err != nil && interrupted == nil && c.IsClosed() {
		err = lostConn(err) // the session ended, and its transaction
	}
	if err != nil || !ok {
		rollbackAfterFailure(l.conn)
		l.tx = nil
	}
	if err != nil {
		return false, m.waitError(tryOp(try), err, interrupted)
	}
	return ok, nil
}

// withArgs returns the keys' arguments followed by extra, in a slice of its
// own. m.sql.args is shared by every call on m: appending to it must never
// write into its backing array, which concurrent calls would then share, so
// it is kept with no spare capacity (see newStatements) and extended here.
func (m *Mutex) withArgs(extra ...any) []any {
	return append(slices.Clip(m.sql.args), extra...)
}

// maxLockTimeout is the largest lock_timeout (an int4 of milliseconds). Longer
// bounds are enforced by the client alone.
const maxLockTimeout = (1<<31 - 1) * time.Millisecond

// waitError turns a failed lock call into the error Lock returns: a bound that
// ran out matches context.DeadlineExceeded, a cancellation context.Canceled;
// the driver's error stays reachable with errors.As.
func (m *Mutex) waitError(op string, err, interrupted error) error {
	var pgErr *pgconn.PgError
	switch {
	case interrupted != nil:
		return m.errorf(op, interrupted, err)
	case errors.As(err, &pgErr) && pgErr.Code == sqlstateLockNotAvailable:
		return m.errorf(op, context.DeadlineExceeded, err)
	case errors.As(err, &pgErr) && pgErr.Code == sqlstateOutOfSharedMemory:
		return m.errorf(op, ErrLockTable, err)
	default:
		return m.errorf(op, err)
	}
}

// errorf returns the error of op on m: errs in a row, most general first
// (a sentinel, then its cause).
func (m *Mutex) errorf(op string, errs ...error) error {
	return &Error{Op: op, Lock: m.String(), Err: wrapErrs(errs...)}
}

// scanBools scans the answer of a try or unlock call: one bool, or for a set
// an array of them, all of which must be true.
func scanBools(row pgx.Row, n int, ok *bool) error {
	if n == 1 {
		return row.Scan(ok)
	}
	var bs []bool
	err := row.Scan(&bs)
	*ok = err == nil && len(bs) == n && allTrue(bs)
	return err
}

// grace is how long past its bound the client lets a wait run before it
// cancels it. One key's wait is bounded by the server's lock_timeout; a set's
// lock_timeout bounds each key's wait, not the set's, so the client enforces
// the bound on the whole set itself.
func (m *Mutex) grace() time.Duration {
	if m.sql.n > 1 {
		return 0
	}
	return deadlineGrace
}
