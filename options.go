package advisorylock

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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
	// of the package's lock sessions, or with PinConnection that of a pooled
	// connection, pinned while the lock is held. The lock is released by
	// Unlock or when the session ends.
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
	pin         bool          // session locks pin a pooled connection each, not on lock sessions
	maxSessions int           // shared lock sessions
	sessionPool *pgxpool.Pool // whose settings lock sessions use; nil: the Mutex's pool
	// fencingSchema is the schema of the fencing sequence; "" without fencing.
	fencingSchema string
	// releaseTimeout bounds WithLock's release; the tests shorten it.
	releaseTimeout time.Duration
	err            error // the first invalid option, reported by every call
}

func newConfig(opts []Option) config {
	c := config{keepalive: DefaultKeepalive, releaseTimeout: defaultReleaseTimeout, maxSessions: DefaultMaxSessions}
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

// WithTimeout bounds the wait for the lock to d, or to the context's deadline
// if earlier; the server enforces it (lock_timeout, in the lock's own
// statement), at no extra round trip and no reconnect. A wait that runs out
// returns an error matching context.DeadlineExceeded. Zero means no timeout
// (the default); a negative d makes every call fail with ErrInvalidArgument.
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
// released when that transaction ends. Work done through the transaction
// ([Lock.Tx]) commits or rolls back with the lock.
func TransactionScope() Option {
	return optionFunc(func(c *config) { c.scope = ScopeTransaction })
}

// WithKeepalive sets the interval of the probe that watches a held session
// lock's idle connection: a network gone silent is noticed within two
// intervals (a session the server ends, at once). The default is
// [DefaultKeepalive] (3s); zero turns the probe off. A negative d makes every
// call of the Mutex fail with ErrInvalidArgument.
//
// On lock sessions it also bounds the server's side, through the session's
// tcp_keepalives_idle, tcp_keepalives_interval, tcp_keepalives_count and
// tcp_user_timeout: the server ends the session of a client it has not heard
// from for 2d + max(d, 1s) (9s at the default; 3d from d = 1s up), or up to
// one of its keepalive intervals (d/2 in whole seconds, at least 1s) more.
// That is after the holder, which gives up within 2d, was told, and hours
// before the server's defaults would (2h11m on Linux). A lock session's own
// socket sends TCP keepalives after d/2 idle (in whole seconds, at least 1s),
// and gives up after three unanswered or, on Linux, as long with data
// unacknowledged: a silent network is noticed during a wait too, which then
// starts again. Zero leaves the server's settings and the socket's alone.
func WithKeepalive(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid(fmt.Sprintf("WithKeepalive(%v): negative duration", d)))
			return
		}
		c.keepalive = d
	})
}

// WithHooks adds hooks that observe the Mutex's acquisitions and, for those
// implementing [HoldHook], [LostHook] and [RetryHook] (found once, when the
// Mutex is created), its holds, losses and waits started again. Hooks are
// called in the order given. Nil hooks are ignored.
func WithHooks(hooks ...Hook) Option {
	return optionFunc(func(c *config) {
		for _, h := range hooks {
			if h != nil {
				c.hooks = append(c.hooks, h)
			}
		}
	})
}

// AllowPooler lets session-scoped locks run through a connection pooler,
// which they otherwise refuse with [ErrPooler] (the backend running the lock
// call is not the one the connection announced). Use it only for a pooler
// that dedicates a server session to each client connection (session
// pooling); transaction-scoped locks work through any pooler.
func AllowPooler() Option {
	return optionFunc(func(c *config) { c.allowPooler = true })
}

// PinConnection holds each of the Mutex's session-scoped locks on a
// connection of its pool, pinned while the lock is held and watched by a
// goroutine of its own, instead of on the package's lock sessions (see the
// package documentation): a held lock then costs a pooled connection, as it
// did before lock sessions. It overrides WithMaxSessions and
// WithSessionPool.
func PinConnection() Option {
	return optionFunc(func(c *config) { c.pin = true })
}

// WithMaxSessions sets how many shared lock sessions, at most, carry the
// Mutex's uncontended session-scoped locks (DefaultMaxSessions by default).
// A lock that must wait uses a session of its own beyond them. An n below 1 makes every
// call of the Mutex fail with ErrInvalidArgument.
func WithMaxSessions(n int) Option {
	return optionFunc(func(c *config) {
		if n < 1 {
			c.fail(invalid(fmt.Sprintf("WithMaxSessions(%d): below 1", n)))
			return
		}
		c.maxSessions = n
	})
}

// WithSessionPool opens the Mutex's lock sessions with the connection
// settings of pool rather than those of the Mutex's own pool: for example a direct connection to
// PostgreSQL, when the application's pool goes through a pooler in
// transaction mode. Sessions are shared by the Mutexes naming the same pool.
// A nil pool is ignored.
func WithSessionPool(pool *pgxpool.Pool) Option {
	return optionFunc(func(c *config) {
		if pool != nil {
			c.sessionPool = pool
		}
	})
}
