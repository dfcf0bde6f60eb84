package advisorylock

import (
	"context"
	"errors"
	"time"
)

// defaultReleaseTimeout bounds a release that WithLock runs on its own
// context.
const defaultReleaseTimeout = 10 * time.Second

// errUnlockFalse is the cause when pg_advisory_unlock answers false for a lock
// this package believed held.
var errUnlockFalse = errors.New("the server reported the lock was not held")

// unlockSession runs pg_advisory_unlock. keep reports whether the server
// confirmed the release, so that the connection may go back to the pool.
func (l *Lock) unlockSession(ctx context.Context, op string) (keep bool, err error) {
	tag, err := l.conn.Conn().Exec(ctx, l.m.sql.unlock, l.m.sql.args...)
	switch {
	case err != nil && l.conn.Conn().IsClosed() && ctx.Err() == nil:
		// The session is gone, and the lock with it, perhaps for a while.
		return false, l.m.errorf(op, ErrLockLost, err)
	case err != nil:
		return false, l.m.errorf(op, err)
	case tag.RowsAffected() != 1:
		return false, l.m.errorf(op, ErrLockLost, errUnlockFalse)
	}
	return true, nil
}

// endTx commits or rolls back the lock's transaction. keep reports whether
// the transaction ended cleanly (pgx closes the connection when it cannot).
func (l *Lock) endTx(ctx context.Context, op string, commit bool) (keep bool, err error) {
	if commit {
		err = l.tx.Commit(ctx)
	} else {
		err = l.tx.Rollback(ctx)
	}
	c := l.conn.Conn()
	switch {
	case err == nil:
		return true, nil
	case c.IsClosed() && ctx.Err() != nil:
		// pgx closed the connection because ctx ended the statement: the
		// session, and the lock with it, ended here, not elsewhere.
		return false, l.m.errorf(op, err)
	case c.IsClosed():
		return false, l.m.errorf(op, ErrLockLost, err)
	case c.PgConn().TxStatus() != 'I':
		return false, l.m.errorf(op, err)
	default:
		// pgx.ErrTxCommitRollback: the transaction had failed; the lock is
		// released all the same.
		return true, l.m.errorf(op, err)
	}
}
