package advisorylock

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// Waits that survive a lost connection.
//
// A wait holds nothing until the grant reaches the caller. When the
// connection it waits on ends before that (its backend terminated, the server
// restarted or failed over, the network went silent and the client closed
// it), its server session has ended, or ends as soon as the server notices
// (see bound.go), and anything it was granted meanwhile ends with it, never
// handed to anyone: starting again cannot make two holders. So Lock waits
// again, on a fresh connection, after a pause that doubles from
// retryFirst up to retryMax (with jitter, so that the waiters of a restarted
// server do not come back in step), within the same bound: WithTimeout and
// the context. While it does, a new connection that cannot be had, or that
// reaches a hot standby (a failover under way), is one more reason to wait
// and try again, not a failure; only the bound ends the call then, with an
// error matching context.DeadlineExceeded that wraps the last cause. A first
// attempt that cannot connect fails at once: a server never reached is more
// likely misconfigured than failing over. TryLock never retries: it is one
// round trip. A connection the server closed over the statement itself (a
// pooler refusing it) is no loss to retry: the statement would be refused
// again.
//
// An interrupted wait (a timeout, a cancellation) is never started again, even
// when interrupting it closed its connection: its bound is spent.

const (
	// retryFirst is the pause before the first retry: a terminated backend
	// leaves the server ready for the next connection at once.
	retryFirst = 20 * time.Millisecond
	// retryMax caps the pause between retries: a restarted server is waited
	// for with a new connection every two seconds at most.
	retryMax = 2 * time.Second
)

// connLost marks the error of an attempt whose connection, or lock session,
// ended before the grant reached the caller, for retryable. It is invisible
// in messages.
type connLost struct{ err error }

func (e *connLost) Error() string { return e.err.Error() }
func (e *connLost) Unwrap() error { return e.err }

// lostConn marks err as the end of an attempt's connection.
func lostConn(err error) error { return &connLost{err} }

// retryable reports whether an attempt that failed with err may start again:
// its connection ended before the grant, by a failure of the network or of
// the server (a terminated backend, a shutdown: SQLSTATE class 57), not by
// the server refusing the statement (a pooler's protocol error, say, which
// would refuse it again); or, once the wait has lost one (retrying), a new
// connection could not be had, its session ended as it opened, or it reached
// a hot standby.
func retryable(err error, retrying bool) bool {
	var cl *connLost
	if errors.As(err, &cl) {
		var pgErr *pgconn.PgError
		return !errors.As(cl.err, &pgErr) || strings.HasPrefix(pgErr.Code, "57")
	}
	if !retrying {
		return false
	}
	var ce *pgconn.ConnectError
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrStandby):
		return true
	case errors.Is(err, pgwire.ErrClosed):
		// Not a session closed to end a wait that ran out of time.
		return !errors.Is(err, context.DeadlineExceeded)
	case !errors.As(err, &ce):
		return false
	case errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000"):
		// Refused credentials, a database that does not exist: no wait
		// ends those.
		return false
	}
	return true
}

// retryDelay returns the pause before retry n (1 for the first): retryFirst
// doubled n-1 times, at most retryMax, less up to half of it at random.
func retryDelay(n int) time.Duration {
	d := retryMax
	if n <= 8 {
		d = min(retryFirst<<(n-1), retryMax)
	}
	return d - rand.N(d/2+1)
}

// takeRetrying is take for Lock: a wait that loses its connection before the
// grant starts again, within bound (0: none) and ctx. See above.
func (m *Mutex) takeRetrying(ctx context.Context, bound time.Duration) (*Lock, error) {
	var deadline time.Time
	if bound > 0 {
		deadline = time.Now().Add(bound)
	}
	for retries := 0; ; retries++ {
		l, err := m.takeOnce(ctx, bound, false)
		if err == nil || !retryable(err, retries > 0) {
			return l, err
		}
		cause := lostCause(err)
		if ctxErr := ctx.Err(); ctxErr != nil {
			if errors.Is(err, ctxErr) {
				return nil, err
			}
			return nil, m.errorf("lock", ctxErr, cause)
		}
		delay := retryDelay(retries + 1)
		if !deadline.IsZero() {
			rest := time.Until(deadline)
			if rest <= 0 {
				return nil, m.errorf("lock", context.DeadlineExceeded, cause)
			}
			delay = min(delay, rest)
		}
		if m.hooks != nil {
			m.hooks.AcquireRetry(ctx, m, AcquireRetryData{Retry: retries + 1, Delay: delay, Err: err})
		}
		if err := pause(ctx, delay); err != nil {
			return nil, m.errorf("lock", err, cause)
		}
		if !deadline.IsZero() {
			if bound = time.Until(deadline); bound <= 0 {
				return nil, m.errorf("lock", context.DeadlineExceeded, cause)
			}
		}
	}
}

// pause waits d, or returns ctx's error when ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
