package advisorylock

import (
	"context"
	"errors"
)

// WithLock acquires m's lock, runs fn while holding it, releases it, and
// returns fn's value and error. It blocks while waiting, as Mutex.Lock does,
// and fails as Lock does when the lock cannot be acquired, without calling fn.
//
// fn's context is derived from ctx. It carries the lock (LockFromContext) and,
// in transaction scope, the lock's transaction (TxFromContext). It is cancelled
// when the lock is lost, with a context.Cause matching ErrLockLost: fn should
// stop its work then, since another holder may have started.
//
// The lock is released however fn ends: returning (a transaction-scoped lock
// commits when fn's error is nil and rolls back otherwise), panicking (the
// panic goes on after the release) or calling runtime.Goexit. The release runs
// on a context that keeps ctx's values but not its cancellation, bounded to 10s,
// so a ctx cancelled while fn ran still lets the lock go cleanly. If the release
// fails, fn's value is still returned and the error joins fn's error with the
// release error (matching ErrLockLost when the lock was lost).
func WithLock[T any](ctx context.Context, m *Mutex, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if m == nil {
		return zero, errNilMutex
	}
	if fn == nil {
		return zero, m.errorf("lock", errNilFunc)
	}
	l, err := m.Lock(ctx)
	if err != nil {
		return zero, err
	}
	v, fnErr, releaseErr := runLocked(l, fn)
	switch {
	case releaseErr == nil:
		return v, fnErr
	case fnErr == nil:
		return v, releaseErr
	default:
		return v, errors.Join(fnErr, releaseErr)
	}
}

// runLocked runs fn under l and releases l on every exit path, including a
// panic or runtime.Goexit in fn.
func runLocked[T any](l *Lock, fn func(context.Context) (T, error)) (v T, fnErr, releaseErr error) {
	fctx, cancel := context.WithCancelCause(&lockContext{Context: l.hctx, l: l})
	l.bind(cancel)
	returned := false
	defer func() {
		cancel(context.Canceled)
		releaseErr = l.releaseWithin(l.hctx, returned && fnErr == nil, l.m.cfg.releaseTimeout)
	}()
	v, fnErr = fn(fctx)
	returned = true
	return v, fnErr, nil
}

// lockContext carries a Lock as a context value without an extra allocation
// for context.WithValue.
type lockContext struct {
	context.Context
	l *Lock
}

func (c *lockContext) Value(key any) any {
	if key == (ctxKey{}) {
		return c.l
	}
	return c.Context.Value(key)
}
