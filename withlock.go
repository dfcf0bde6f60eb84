package advisorylock

import (
	"context"
	"errors"
)

// WithLock acquires m's lock as [Mutex.Lock] does, runs fn while holding it,
// releases it however fn ends (return, panic, runtime.Goexit; a transaction
// commits only when fn returns nil), and returns fn's value and error. fn's
// context carries the lock ([LockFromContext]) and is cancelled, with a cause
// matching [ErrLockLost], when the lock is lost. A failed acquisition is
// returned without calling fn; a failed release is joined to fn's error.
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
