package advisorylock

import (
	"fmt"
	"time"
)

// Mode is the lock mode: exclusive (the default) or shared.
type Mode uint8

const (
	// ModeExclusive conflicts with every other holder of the key.
	ModeExclusive Mode = iota
	// ModeShared conflicts only with exclusive holders: any number of shared
	// holders may hold the key together.
	ModeShared
)

// String returns "exclusive" or "shared".
func (m Mode) String() string {
	if m == ModeShared {
		return "shared"
	}
	return "exclusive"
}

// Scope says what a lock's lifetime is tied to.
type Scope uint8

const (
	// ScopeSession (the default) ties the lock to a database session: one
	// pooled connection is pinned while the lock is held, and the lock is
	// released by Unlock or when the session ends.
	ScopeSession Scope = iota
	// ScopeTransaction ties the lock to a transaction on a pinned
	// connection: it is released when the transaction commits or rolls back.
	// It works behind PgBouncer's transaction pooling.
	ScopeTransaction
)

// String returns "session" or "transaction".
func (s Scope) String() string {
	if s == ScopeTransaction {
		return "transaction"
	}
	return "session"
}

// DefaultKeepalive is the interval of the active probe that watches a held
// session lock when WithKeepalive is not given. See WithKeepalive.
const DefaultKeepalive = 3 * time.Second

// An Option configures a Mutex. Options are applied in order; a later option
// overrides an earlier one. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the resolved configuration of a Mutex.
type config struct {
	timeout     time.Duration // 0: none
	mode        Mode
	scope       Scope
	keepalive   time.Duration // 0: no active probe
	hooks       []Hook
	allowPooler bool
	// releaseTimeout bounds WithLock's release; the tests shorten it.
	releaseTimeout time.Duration
	err            error // the first invalid option, reported by every call
}

func newConfig(opts []Option) config {
	c := config{keepalive: DefaultKeepalive, releaseTimeout: defaultReleaseTimeout}
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

// WithTimeout bounds the wait for the lock to d. The bound is enforced by the
// server, through lock_timeout sent in the same statement as the lock call:
// it costs no extra round trip and, when it fires, the connection survives. A
// context deadline bounds the wait too; the earlier of the two applies. A
// wait that runs out returns an error matching context.DeadlineExceeded.
//
// Zero means no timeout (the default). A negative d makes every call of the
// Mutex fail with ErrInvalidArgument.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid(fmt.Sprintf("WithTimeout(%v): negative duration", d)))
			return
		}
		c.timeout = d
	})
}

// Shared makes the Mutex take the lock in shared mode: shared holders exclude
// exclusive ones but not each other.
func Shared() Option {
	return optionFunc(func(c *config) { c.mode = ModeShared })
}

// TransactionScope makes the Mutex take transaction-level locks
// (pg_advisory_xact_lock): each acquisition begins a transaction on a pinned
// connection, in the same round trip as the lock call, and the lock is
// released when that transaction ends. Work done through the transaction (see
// TxFromContext and Lock.Tx) commits or rolls back with the lock.
func TransactionScope() Option {
	return optionFunc(func(c *config) { c.scope = ScopeTransaction })
}

// WithKeepalive sets the interval of the active probe that watches a held
// session-scoped lock's connection, to notice a network that went silent. Each
// held lock sends one small query per interval while it is idle; a probe that
// gets no answer within another interval marks the lock lost. A silent network
// is thus noticed within two intervals. A session that the server ends is
// noticed at once, without probing.
//
// The default is DefaultKeepalive (3s: noticed within 6s). Zero turns the
// probe off (a silent network is then noticed only when the operating system
// gives up on the connection). A negative d makes every call of the Mutex fail
// with ErrInvalidArgument.
func WithKeepalive(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid(fmt.Sprintf("WithKeepalive(%v): negative duration", d)))
			return
		}
		c.keepalive = d
	})
}

// WithHooks adds hooks that observe the Mutex's acquisitions, holds and
// losses. Each hook implements one or more of AcquireHook, HoldHook and
// LostHook; the interfaces are found once, when the Mutex is created. Hooks
// are called in the order given. Nil hooks are ignored.
func WithHooks(hooks ...Hook) Option {
	return optionFunc(func(c *config) {
		for _, h := range hooks {
			if h != nil {
				c.hooks = append(c.hooks, h)
			}
		}
	})
}

// AllowPooler lets session-scoped locks run through a connection pooler in
// front of PostgreSQL. By default a session lock is taken only when the
// backend running the lock call is the server process the connection
// announced at start-up; behind a pooler it is not, and Lock fails with
// ErrPooler, since a pooler in transaction mode (PgBouncer's
// pool_mode=transaction) hands the session, and the lock in it, to other
// clients. Use AllowPooler only for a pooler that dedicates a server session to
// each client connection (session pooling). Transaction-scoped locks work
// through any pooler and need no option.
func AllowPooler() Option {
	return optionFunc(func(c *config) { c.allowPooler = true })
}
