package semaphore

import (
	"fmt"
	"time"

	"github.com/advisorylock/advisorylock"
)

// DefaultRecheck is how often a waiter at the head of the queue looks at the
// slots when no release is announced, when WithRecheck is not given: it
// bounds how long a slot freed by a session that died stays unnoticed.
const DefaultRecheck = time.Second

// MinRecheck is the shortest recheck interval WithRecheck accepts.
const MinRecheck = 10 * time.Millisecond

// leaseFactor: the head of the queue holds it on a session that the server
// ends once it has sent nothing for leaseFactor recheck intervals
// (idle_session_timeout), so that a head whose process or network stops holds
// the queue up for a bounded time.
const leaseFactor = 3

// maxRecheck keeps the lease within idle_session_timeout's range (an int4 of
// milliseconds).
const maxRecheck = (1<<31 - 1) * time.Millisecond / leaseFactor

// An Option configures a Semaphore. Options are applied in order; a later
// option overrides an earlier one. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the resolved configuration of a Semaphore.
type config struct {
	timeout  time.Duration // 0: none
	recheck  time.Duration
	hooks    []advisorylock.Hook
	slotOpts []advisorylock.Option
	err      error // the first invalid option, reported by every call
}

func newConfig(opts []Option) config {
	c := config{recheck: DefaultRecheck}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithTimeout bounds an acquisition (Lock, or WithLock's) to d, or to the
// context's deadline if earlier: the wait in the queue and for a slot. A wait
// that runs out returns an error matching context.DeadlineExceeded. Zero means
// no timeout (the default); a negative d makes every call fail with
// [advisorylock.ErrInvalidArgument].
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid("WithTimeout(%v): negative duration", d))
			return
		}
		c.timeout = d
	})
}

// WithRecheck sets how often the waiter at the head of the queue looks at the
// slots when no release has been announced (default [DefaultRecheck], 1s):
// a slot freed by a session that died without its process announcing it (a
// crash, a SIGKILL) is taken within d of the server freeing it. The head's
// session also ends, freeing the queue for the next waiter, once it has sent
// nothing for 3×d (see the package documentation). A d below [MinRecheck] or
// above about 8 days makes every call fail with
// [advisorylock.ErrInvalidArgument].
func WithRecheck(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < MinRecheck || d > maxRecheck {
			c.fail(invalid("WithRecheck(%v): want %v to %v", d, MinRecheck, maxRecheck))
			return
		}
		c.recheck = d
	})
}

// WithHooks adds hooks that observe the semaphore, as [advisorylock.WithHooks]
// does for a Mutex: each Lock or TryLock is one acquisition (AcquireStart and
// AcquireEnd, with the semaphore's queue Mutex, whatever slot it ends up
// with, and its whole wait), and each slot held is one hold (HoldStart,
// HoldEnd, LockLost, with the slot's Lock). Nil hooks are ignored.
func WithHooks(hooks ...advisorylock.Hook) Option {
	return optionFunc(func(c *config) {
		for _, h := range hooks {
			if h != nil {
				c.hooks = append(c.hooks, h)
			}
		}
	})
}

// WithSlotOptions configures the Mutex of each slot (see [Semaphore.Slot]),
// as for [advisorylock.NewWithKey]: [advisorylock.WithMaxSessions] for
// the package's lock sessions that hold the slots,
// [advisorylock.PinConnection] to hold each on a pooled connection instead,
// [advisorylock.WithSessionPool], [advisorylock.WithKeepalive] to watch a held
// slot, [advisorylock.AllowPooler]. A slot is exclusive and session-scoped:
// [advisorylock.Shared] and [advisorylock.TransactionScope] make every call
// fail with [advisorylock.ErrInvalidArgument]. A timeout or hooks given here
// would apply to each slot's own acquisitions: use this package's
// [WithTimeout] and [WithHooks] instead.
func WithSlotOptions(opts ...advisorylock.Option) Option {
	return optionFunc(func(c *config) {
		c.slotOpts = append(c.slotOpts, opts...)
	})
}

// invalid returns an error about bad input, matching
// advisorylock.ErrInvalidArgument.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{advisorylock.ErrInvalidArgument}, args...)...)
}
