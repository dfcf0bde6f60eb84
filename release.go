package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// defaultReleaseTimeout bounds a release that WithLock runs on its own
// context.
const defaultReleaseTimeout = 10 * time.Second

// errUnlockFalse is the cause when pg_advisory_unlock answers false for a lock
// this package believed held.
var errUnlockFalse = errors.New("the server reported the lock was not held")

// begin moves a held lock to releasing, or says why it cannot.
// After a loss it waits until the lost connection is closed, so that the
// pool no longer counts it when Unlock returns.
func (l *Lock) begin() error {
	if l == nil {
		return ErrNotHeld
	}
	l.mu.Lock()
	switch l.state {
	case stateHeld:
		l.state = stateReleasing
		l.mu.Unlock()
		return nil
	case stateLost:
		err, destroyed := l.err, l.destroyed
		l.mu.Unlock()
		if destroyed != nil {
			<-destroyed
		}
		return err
	default:
		l.mu.Unlock()
		return l.m.errorf("unlock", ErrNotHeld)
	}
}

// release is Unlock (commit) and Rollback (!commit).
func (l *Lock) release(ctx context.Context, commit bool) error {
	if err := l.begin(); err != nil {
		l.disarm()
		return err
	}
	l.stopWatch()
	var err error
	if l.tx != nil {
		err = l.endTx(ctx, commit)
	} else {
		err = l.unlockSession(ctx)
	}
	l.disarm()
	l.finish(err)
	return err
}

// releaseWithin is release on a context that keeps ctx's values but not its
// cancellation, bounded to d: WithLock's release. The bound is a timer that
// closes the connection, rather than a context deadline, which pgx would
// have to watch; a release cut short so reports the lock lost, since the
// server stopped answering.
func (l *Lock) releaseWithin(ctx context.Context, commit bool, d time.Duration) error {
	l.guard = time.AfterFunc(d, func() { _ = l.conn.Conn().PgConn().Conn().Close() })
	return l.release(context.WithoutCancel(ctx), commit)
}

// disarm stops releaseWithin's timer. It reports false when the timer fired
// (or is firing): the connection is closed or about to be, and must not go
// back to the pool.
func (l *Lock) disarm() bool {
	if l == nil || l.guard == nil {
		return true
	}
	g := l.guard
	l.guard = nil
	return g.Stop()
}

// putBack returns the lock's connection to the pool after a clean release,
// unless releaseWithin's timer is closing it.
func (l *Lock) putBack() {
	if l.disarm() {
		l.conn.Release()
	} else {
		destroy(l.conn)
	}
}

// unlockSession runs pg_advisory_unlock and returns the connection to the
// pool, or destroys it when the unlock cannot be confirmed.
func (l *Lock) unlockSession(ctx context.Context) error {
	tag, err := l.conn.Conn().Exec(ctx, l.m.sql.unlock, l.m.sql.args...)
	ok := tag.RowsAffected() == 1
	switch {
	case err != nil && l.conn.Conn().IsClosed() && ctx.Err() == nil:
		// The session is gone, and the lock with it, perhaps for a while.
		destroy(l.conn)
		return l.m.errorf("unlock", ErrLockLost, err)
	case err != nil:
		destroy(l.conn)
		return l.m.errorf("unlock", err)
	case !ok:
		destroy(l.conn)
		return l.m.errorf("unlock", ErrLockLost, errUnlockFalse)
	}
	l.putBack()
	return nil
}

// endTx commits or rolls back the lock's transaction. pgx closes the
// connection when the transaction cannot be ended cleanly; it is then
// removed from the pool.
func (l *Lock) endTx(ctx context.Context, commit bool) error {
	var err error
	if commit {
		err = l.tx.Commit(ctx)
	} else {
		err = l.tx.Rollback(ctx)
	}
	c := l.conn.Conn()
	if err != nil && c.IsClosed() {
		destroy(l.conn) // at once, where the pool would close it in the background
		if ctx.Err() != nil {
			// pgx closed the connection because ctx ended the statement:
			// the session, and the lock with it, ended here, not elsewhere.
			return l.m.errorf("unlock", err)
		}
		return l.m.errorf("unlock", ErrLockLost, err)
	}
	if err != nil && c.PgConn().TxStatus() != 'I' {
		destroy(l.conn)
		return l.m.errorf("unlock", err)
	}
	l.putBack()
	if err != nil {
		// pgx.ErrTxCommitRollback: the transaction had failed; the lock is
		// released all the same.
		return l.m.errorf("unlock", err)
	}
	return nil
}

// finish marks a released lock, closes Done and reports HoldEnd, preceded by
// LockLost when the release found the lock lost.
func (l *Lock) finish(err error) {
	lost := errors.Is(err, ErrLockLost)
	l.mu.Lock()
	l.state = stateReleased
	if lost {
		l.state, l.err = stateLost, err
	}
	l.mu.Unlock()
	l.leaveGate()
	close(l.done)
	if l.m.hooks != nil && !l.acquired.IsZero() {
		held := time.Since(l.acquired)
		if lost {
			l.m.hooks.LockLost(l.hctx, l, LostData{Held: held, Err: err})
		}
		l.m.hooks.HoldEnd(l.hctx, l, HoldEndData{Held: held, Lost: lost, Err: err})
	}
}

// abandon releases a lock by closing its connection, without hooks: for
// panics in hooks between acquisition and the caller receiving the lock.
func (l *Lock) abandon() {
	l.mu.Lock()
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	l.state = stateReleased
	l.mu.Unlock()
	l.stopWatch()
	destroy(l.conn)
	l.leaveGate()
	close(l.done)
}

// lose marks a held lock lost because of cause: the connection is destroyed,
// Done closed, WithLock's context cancelled, and hooks told. It does nothing
// when the lock is no longer held (a release is under way and reports the
// loss itself).
func (l *Lock) lose(cause error) {
	l.mu.Lock()
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	l.state = stateLost
	l.err = l.m.errorf("lock", ErrLockLost, cause)
	l.destroyed = make(chan struct{})
	err, cancel := l.err, l.onLost
	l.mu.Unlock()

	// The holder is told first: when the client noticed the loss itself (a
	// probe went unanswered), the server may still hold the lock, until the
	// connection is closed below.
	close(l.done)
	if cancel != nil {
		cancel(err)
	}
	destroy(l.conn)
	close(l.destroyed)
	l.leaveGate()
	if l.m.hooks != nil && !l.acquired.IsZero() {
		held := time.Since(l.acquired)
		l.m.hooks.LockLost(l.hctx, l, LostData{Held: held, Err: err})
		l.m.hooks.HoldEnd(l.hctx, l, HoldEndData{Held: held, Lost: true, Err: err})
	}
}

// bind arranges for cancel to be called with the loss when the lock is lost,
// at once if it already was.
func (l *Lock) bind(cancel context.CancelCauseFunc) {
	l.mu.Lock()
	if l.state == stateLost {
		err := l.err
		l.mu.Unlock()
		cancel(err)
		return
	}
	l.onLost = cancel
	l.mu.Unlock()
}

// String describes the lock for logs: the Mutex and its state.
func (l *Lock) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	state := [...]string{"held", "releasing", "released", "lost"}[l.state]
	return fmt.Sprintf("%s (%s, %s scope, %s)", l.m, l.m.cfg.mode, l.m.cfg.scope, state)
}

// leaveGate lets the next goroutine of this process that waits for the lock go
// ahead, once the server no longer sees this lock held.
func (l *Lock) leaveGate() {
	if l.gate != nil {
		l.m.leave(l.gate)
		l.gate = nil
	}
}
