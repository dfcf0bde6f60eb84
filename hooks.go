package advisorylock

import (
	"context"
	"time"
)

// A Hook observes a Mutex's acquisitions, as pgx's tracers observe queries.
// Hook is the base interface; a Hook may also implement HoldHook, LostHook
// and RetryHook, which WithHooks finds once, by type assertion.
//
// AcquireStart is called before the first round trip, with the caller's
// context; the context it returns is used for the acquisition and passed to
// AcquireEnd. AcquireEnd is called exactly once per AcquireStart that
// returned, on every exit path, before Lock or TryLock returns. A Mutex whose
// input is bad (ErrInvalidArgument) fails before AcquireStart.
//
// Hooks are called synchronously on the lock path and must be safe for
// concurrent use. They observe; they never change a lock's outcome. A hook
// that panics does not leave a lock held: the lock is released and the panic
// continues to the caller (see the package documentation). With no hooks
// set, the lock path calls none and pays nothing for them.
type Hook interface {
	AcquireStart(ctx context.Context, m *Mutex, data AcquireStartData) context.Context
	AcquireEnd(ctx context.Context, m *Mutex, data AcquireEndData)
}

// AcquireStartData describes an acquisition about to start.
type AcquireStartData struct {
	// Try is true for TryLock, which never waits.
	Try bool
	// Timeout is the bound on the wait: the earlier of WithTimeout and the
	// context's deadline. Zero means none; negative, a deadline already
	// passed.
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
	// Token is the acquired lock's fencing token (see WithFencing); 0 when
	// the Mutex is not fenced or nothing was acquired.
	Token int64
	// Err is the error returned to the caller, or nil.
	Err error
}

// HoldHook observes the time a lock is held.
//
// HoldStart is called once the lock is acquired, after AcquireEnd and before
// Lock returns, with the caller's context (not the one AcquireStart
// returned); the context it returns is the lock's hold context: WithLock
// derives the context it hands its function from it, so a span started there
// is the parent of the function's work, and it is passed to HoldEnd and
// LostHook.LockLost. HoldEnd is called exactly once per HoldStart that
// returned, when the lock is released (from Unlock or Rollback) or lost (see
// LostHook). A session lock is watched only once HoldStart has returned, so a
// loss is never reported before it.
type HoldHook interface {
	HoldStart(ctx context.Context, l *Lock, data HoldStartData) context.Context
	HoldEnd(ctx context.Context, l *Lock, data HoldEndData)
}

// HoldStartData describes a lock that was just acquired.
type HoldStartData struct {
	// Wait is the time the acquisition took.
	Wait time.Duration
	// Token is the lock's fencing token (see WithFencing); 0 when the Mutex
	// is not fenced.
	Token int64
	// AcquireContext is the context the last Hook.AcquireStart returned for
	// this acquisition, for relating the hold to its acquisition: a tracing
	// hook links the two spans through it. It must not be used to run work.
	AcquireContext context.Context
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

// LostHook is told when a held lock is lost. LockLost is called at most once
// per lock, by whichever notices the loss first: the goroutine that watches a
// held session lock, a statement run in a transaction-scoped lock's
// transaction, or Unlock or Rollback. It is called after Done is closed and
// before HoldEnd (whose data then has Lost set), with the hold context.
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

// RetryHook is told when a wait starts again: [Mutex.Lock] lost its
// connection before the grant (its backend was terminated, the server
// restarted or failed over, the network went silent) and, after a pause,
// waits again on a fresh connection (see the package documentation).
// AcquireRetry is called before the pause, with the context AcquireStart
// returned, between AcquireStart and AcquireEnd; a tracing hook adds an event
// to the acquisition's span.
type RetryHook interface {
	AcquireRetry(ctx context.Context, m *Mutex, data AcquireRetryData)
}

// AcquireRetryData describes a wait about to start again.
type AcquireRetryData struct {
	// Retry counts the retries of this acquisition: 1 for the first.
	Retry int
	// Delay is the pause before the retry.
	Delay time.Duration
	// Err is why the previous attempt ended: the lost connection's error, or
	// why a new one could not be had.
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

// MultiHook returns a Hook that calls each of hooks in order, also for the
// HoldHook, LostHook and RetryHook each implements, as pgx's multitracer
// does. The context returned by one hook's Start is passed to the next; the
// End methods are called in the same order, each with the context the last
// Start returned, so a hook that keeps state in the context must find it
// under a key of its own. MultiHooks nested in hooks are flattened. Nil hooks
// are ignored.
func MultiHook(hooks ...Hook) Hook {
	return newHookSet(hooks)
}

// hookSet is the resolved list of hooks of a Mutex, and the fan-out behind
// MultiHook.
type hookSet struct {
	acquire []Hook
	hold    []HoldHook
	lost    []LostHook
	retry   []RetryHook
}

func newHookSet(hooks []Hook) *hookSet {
	s := &hookSet{}
	for _, h := range hooks {
		if h == nil {
			continue
		}
		if inner, ok := h.(*hookSet); ok && inner != nil {
			s.acquire = append(s.acquire, inner.acquire...)
			s.hold = append(s.hold, inner.hold...)
			s.lost = append(s.lost, inner.lost...)
			s.retry = append(s.retry, inner.retry...)
			continue
		}
		s.acquire = append(s.acquire, h)
		if a, ok := h.(HoldHook); ok {
			s.hold = append(s.hold, a)
		}
		if a, ok := h.(LostHook); ok {
			s.lost = append(s.lost, a)
		}
		if a, ok := h.(RetryHook); ok {
			s.retry = append(s.retry, a)
		}
	}
	return s
}

func (s *hookSet) empty() bool {
	return len(s.acquire) == 0 && len(s.hold) == 0 && len(s.lost) == 0 && len(s.retry) == 0
}

// AcquireStart implements Hook.
func (s *hookSet) AcquireStart(ctx context.Context, m *Mutex, data AcquireStartData) context.Context {
	for _, h := range s.acquire {
		ctx = h.AcquireStart(ctx, m, data)
	}
	return ctx
}

// AcquireEnd implements Hook.
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

// AcquireRetry implements RetryHook.
func (s *hookSet) AcquireRetry(ctx context.Context, m *Mutex, data AcquireRetryData) {
	for _, h := range s.retry {
		h.AcquireRetry(ctx, m, data)
	}
}
