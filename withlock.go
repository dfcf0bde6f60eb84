package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// A Locker acquires a lock, blocking as [Mutex.Lock] does, and returns it:
// a [*Mutex], or a lock built on Mutexes, such as a slot of a semaphore
// (package github.com/advisorylock/advisorylock/semaphore). [WithLock] takes
// any Locker.
//
// A Locker returns a *Lock, which only a Mutex can make, so whatever it is
// built of, the lock WithLock holds behaves as every other: its release,
// its loss and its hooks are the Mutex's. A Locker must handle being called
// through a nil pointer itself, returning an error; WithLock reports a nil
// Locker, and a nil pointer of any type in one, as [ErrInvalidArgument]
// without calling it.
type Locker interface {
	Lock(ctx context.Context) (*Lock, error)
}

var _ Locker = (*Mutex)(nil)

// WithLock acquires a lock from m as its Lock method does ([Mutex.Lock] for a
// Mutex), runs fn while holding it, releases it however fn ends (return,
// panic, runtime.Goexit; a transaction commits only when fn returns nil), and
// returns fn's value and error. fn's context carries the lock
// ([LockFromContext]) and is cancelled, with a cause matching [ErrLockLost],
// when the lock is lost. A failed acquisition is returned without calling fn;
// a failed release is joined to fn's error. A nil m, or a nil pointer in m,
// and a nil fn fail with [ErrInvalidArgument] before any round trip.
func WithLock[T any](ctx context.Context, m Locker, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if err := checkLocker(m); err != nil {
		return zero, err
	}
	if fn == nil {
		return zero, &Error{Op: "lock", Lock: lockerString(m), Err: errNilFunc}
	}
	l, err := m.Lock(ctx)
	switch {
	case err != nil:
		return zero, err
	case l == nil:
		return zero, &Error{Op: "lock", Lock: lockerString(m), Err: errNoLock}
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

// errNoLock reports a Locker that returned neither a lock nor an error.
var errNoLock error = &argError{"the Locker returned no lock and no error"}

// checkLocker reports a nil Locker, or one holding a nil pointer (or another
// nil reference), which WithLock must not call.
func checkLocker(m Locker) error {
	if m == nil {
		return errNilMutex
	}
	if mm, ok := m.(*Mutex); ok {
		if mm == nil {
			return errNilMutex
		}
		return nil
	}
	switch v := reflect.ValueOf(m); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		if v.IsNil() {
			return invalid(fmt.Sprintf("nil %T", m))
		}
	}
	return nil
}

// lockerString names m in an error: as its String method does, if it has one.
func lockerString(m Locker) string {
	if s, ok := m.(fmt.Stringer); ok {
		return s.String()
	}
	return ""
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
