package advisorylock

import (
	"context"
	"time"
)

// A Hook observes a Mutex. It implements one or more of AcquireHook,
// HoldHook and LostHook; WithHooks finds which, once, by type assertion. A
// value implementing none of them is ignored.
//
// Hooks are called synchronously on the lock path and must be safe for
// concurrent use. They observe; they never change a lock's outcome. A hook
// that panics does not leave a lock held: the lock is released (its
// connection closed) and the panic continues.
type Hook any

// AcquireHook observes the acquisition of a lock: the wait.
//
// AcquireStart is called before the first round trip, with the caller's
// context; the context it returns is used for the acquisition and passed to
// AcquireEnd. AcquireEnd is called exactly once per AcquireStart, on every
// exit path.
type AcquireHook interface {
	AcquireStart(ctx context.Context, m *Mutex, data AcquireStartData) context.Context
	AcquireEnd(ctx context.Context, m *Mutex, data AcquireEndData)
}

// AcquireStartData describes an acquisition about to start.
type AcquireStartData struct {
	// Try is true for TryLock, which never waits.
	Try bool
	// Timeout is the bound on the wait: the earlier of WithTimeout and the
	// context's deadline. Zero means none.
	Timeout time.Duration
}

// AcquireEndData describes how an acquisition ended.
type AcquireEndData struct {
	// Outcome classifies the result.
	Outcome Outcome
	// Wait is the time from AcquireStart to the end, round trips included.
	Wait time.Duration
	// Lock is the acquired lock, or nil.
	Lock *Lock
	// Err is the error returned to the caller, or nil.
	Err error
}

// HoldHook observes the time a lock is held.
//
// HoldStart is called once the lock is acquired, with the caller's context
// (not the one AcquireStart returned); the context it returns is the lock's
// hold context: WithLock derives the context it hands its function from it,
// and it is passed to HoldEnd and LostHook.LockLost. HoldEnd is called exactly
// once per HoldStart, when the lock is released or lost.
type HoldHook interface {
	HoldStart(ctx context.Context, l *Lock, data HoldStartData) context.Context
	HoldEnd(ctx context.Context, l *Lock, data HoldEndData)
}

// HoldStartData describes a lock that was just acquired.
type HoldStartData struct {
	// Wait is the time the acquisition took.
	Wait time.Duration
}

// HoldEndData describes the end of a hold.
type HoldEndData struct {
	// Held is the time from acquisition to release or loss.
	Held time.Duration
	// Lost is true when the hold ended because the lock was lost.
	Lost bool
	// Err is the release error (or the loss, matching ErrLockLost), or nil.
	Err error
}

// LostHook is told when a held lock is lost. LockLost is called from the
// goroutine that noticed the loss, after Done is closed and before HoldEnd.
type LostHook interface {
	LockLost(ctx context.Context, l *Lock, data LostData)
}

// LostData describes a lost lock.
type LostData struct {
	// Held is the time from acquisition to the moment the loss was noticed.
	Held time.Duration
	// Err matches ErrLockLost and wraps the cause.
	Err error
}

// Outcome classifies how an acquisition ended.
type Outcome uint8

const (
	// OutcomeAcquired: the lock was acquired.
	OutcomeAcquired Outcome = iota
	// OutcomeBusy: TryLock found the lock held (ErrLocked).
	OutcomeBusy
	// OutcomeTimeout: the wait ran out (context.DeadlineExceeded).
	OutcomeTimeout
	// OutcomeCanceled: the context was cancelled (context.Canceled).
	OutcomeCanceled
	// OutcomeError: any other failure.
	OutcomeError
)

// String returns "acquired", "busy", "timeout", "canceled" or "error".
func (o Outcome) String() string {
	switch o {
	case OutcomeAcquired:
		return "acquired"
	case OutcomeBusy:
		return "busy"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeCanceled:
		return "canceled"
	default:
		return "error"
	}
}

// MultiHook returns a Hook that calls each of hooks in order, for every one
// of AcquireHook, HoldHook and LostHook it implements. The context returned by
// one hook's Start is passed to the next. Nil hooks are ignored.
func MultiHook(hooks ...Hook) Hook {
	return newHookSet(hooks)
}

// hookSet is the resolved list of hooks of a Mutex, and the fan-out behind
// MultiHook.
type hookSet struct {
	acquire []AcquireHook
	hold    []HoldHook
	lost    []LostHook
}

func newHookSet(hooks []Hook) *hookSet {
	s := &hookSet{}
	for _, h := range hooks {
		if inner, ok := h.(*hookSet); ok {
			s.acquire = append(s.acquire, inner.acquire...)
			s.hold = append(s.hold, inner.hold...)
			s.lost = append(s.lost, inner.lost...)
			continue
		}
		if a, ok := h.(AcquireHook); ok {
			s.acquire = append(s.acquire, a)
		}
		if a, ok := h.(HoldHook); ok {
			s.hold = append(s.hold, a)
		}
		if a, ok := h.(LostHook); ok {
			s.lost = append(s.lost, a)
		}
	}
	return s
}

func (s *hookSet) empty() bool {
	return len(s.acquire) == 0 && len(s.hold) == 0 && len(s.lost) == 0
}

// AcquireStart implements AcquireHook.
func (s *hookSet) AcquireStart(ctx context.Context, m *Mutex, data AcquireStartData) context.Context {
	for _, h := range s.acquire {
		ctx = h.AcquireStart(ctx, m, data)
	}
	return ctx
}

// AcquireEnd implements AcquireHook.
func (s *hookSet) AcquireEnd(ctx context.Context, m *Mutex, data AcquireEndData) {
	for _, h := range s.acquire {
		h.AcquireEnd(ctx, m, data)
	}
}

// HoldStart implements HoldHook.
func (s *hookSet) HoldStart(ctx context.Context, l *Lock, data HoldStartData) context.Context {
	for _, h := range s.hold {
		ctx = h.HoldStart(ctx, l, data)
	}
	return ctx
}

// HoldEnd implements HoldHook.
func (s *hookSet) HoldEnd(ctx context.Context, l *Lock, data HoldEndData) {
	for _, h := range s.hold {
		h.HoldEnd(ctx, l, data)
	}
}

// LockLost implements LostHook.
func (s *hookSet) LockLost(ctx context.Context, l *Lock, data LostData) {
	for _, h := range s.lost {
		h.LockLost(ctx, l, data)
	}
}
