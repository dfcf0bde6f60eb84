package advisorylock

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A Mutex is a PostgreSQL advisory lock, identified by a name or a [Key], on a
// pgxpool.Pool. It is safe for concurrent use: each successful Lock or TryLock
// returns its own [*Lock], so two goroutines of one process exclude each other
// just as two processes do (shared mode excepted). A Mutex holds no state on
// the server and needs no closing. The zero Mutex is not usable; create one
// with [New], [NewWithKey] or [NewSet].
type Mutex struct {
	pool  *pgxpool.Pool
	name  string
	named bool  // made by New: String shows the name, even an empty one
	key   Key   // the first of keys
	keys  []Key // in locking order; more than one for a set
	cfg   config
	hooks *hookSet // nil when no hooks are set
	err   error    // bad input, reported by every call
	sql   statements
	// sessions carries its session locks; nil in transaction scope, with
	// PinConnection, or with bad input.
	sessions *sessionSet
	// fence is the sequence its tokens come from, with WithFencing; nil
	// otherwise.
	fence *fencing

	// racedGrants counts session-level locks found held, and released,
	// after an acquisition that reported failure: grants that raced a
	// timeout or cancel. For the tests.
	racedGrants atomic.Int64
}

// New returns a Mutex for the lock called name, on pool; the name maps to a
// key as the npm package advisory-lock does ([KeyFromName]). New does no I/O
// and never fails: an empty name, a nil pool or an invalid option is reported,
// as an error matching [ErrInvalidArgument], by every call on the Mutex,
// before any round trip.
func New(pool *pgxpool.Pool, name string, opts ...Option) *Mutex {
	m := newMutex(pool, []Key{KeyFromName(name)}, opts)
	m.name, m.named = name, true
	if name == "" && m.err == nil {
		m.err = errEmptyName
	}
	return m
}

// NewWithKey returns a Mutex for an explicit key ([Int64Key], [PairKey]), for
// interoperating with other tools that take advisory locks by number. Like
// New, it does no I/O and reports bad input on every call.
func NewWithKey(pool *pgxpool.Pool, key Key, opts ...Option) *Mutex {
	return newMutex(pool, []Key{key}, opts)
}

// NewSet returns a Mutex over the locks called names, taken and released
// together, on one connection and in one round trip, in a fixed order that
// keeps overlapping sets from deadlocking. Options apply to the set as a
// whole; duplicate names count once; its Key is the first in that order. Like
// New, it does no I/O; no names, an empty one, or more than [MaxSetKeys]
// distinct keys is reported as ErrInvalidArgument by every call.
func NewSet(pool *pgxpool.Pool, names []string, opts ...Option) *Mutex {
	keys := make([]Key, len(names))
	bad := len(names) == 0
	for i, n := range names {
		keys[i] = KeyFromName(n)
		bad = bad || n == ""
	}
	if len(keys) == 0 {
		keys = []Key{{}}
	}
	m := newMutex(pool, keys, opts)
	if bad && m.err == nil {
		m.err = errEmptyName
	}
	return m
}

// MaxSetKeys is the most keys a set may have: a set is locked by one
// statement with a result column per key, and PostgreSQL allows 1664.
const MaxSetKeys = 1000

func newMutex(pool *pgxpool.Pool, keys []Key, opts []Option) *Mutex {
	keys = sortKeys(keys)
	m := &Mutex{pool: pool, key: keys[0], keys: keys, cfg: newConfig(opts)}
	m.err = m.cfg.err
	if pool == nil && m.err == nil {
		m.err = errNilPool
	}
	if len(keys) > MaxSetKeys && m.err == nil {
		m.err = invalid(fmt.Sprintf("a set of %d keys; at most %d", len(keys), MaxSetKeys))
	}
	if len(m.cfg.hooks) > 0 {
		if hs := newHookSet(m.cfg.hooks); !hs.empty() {
			m.hooks = hs
		}
	}
	seq := ""
	if m.err == nil && m.cfg.fencingSchema != "" {
		// The sequence lives in the database the locks are taken in.
		lockPool := pool
		if m.cfg.scope == ScopeSession && m.cfg.sessionPool != nil {
			lockPool = m.cfg.sessionPool
		}
		m.fence = fencingFor(lockPool, m.cfg.fencingSchema)
		seq = m.fence.seq
	}
	m.sql = newStatements(keys, m.cfg.mode, m.cfg.scope, !m.cfg.allowPooler, seq)
	if m.err == nil && m.cfg.scope == ScopeSession && !m.cfg.pin {
		sp := m.cfg.sessionPool
		if sp == nil {
			sp = pool
		}
		m.sessions = sessionsFor(sp, sessionKey{keepalive: m.cfg.keepalive,
			allowPooler: m.cfg.allowPooler, max: m.cfg.maxSessions})
	}
	return m
}

// Name returns the lock's name, or "" for a Mutex made by NewWithKey.
func (m *Mutex) Name() string { return m.name }

// Key returns the lock's key; for a set, the first in locking order.
func (m *Mutex) Key() Key { return m.key }

// Mode returns the lock mode.
func (m *Mutex) Mode() Mode { return m.cfg.mode }

// Scope returns the lock scope.
func (m *Mutex) Scope() Scope { return m.cfg.scope }

// String describes the lock: its quoted name, or its key.
func (m *Mutex) String() string {
	switch {
	case m.named:
		return strconv.Quote(m.name)
	case len(m.keys) > 1:
		return "set of " + strconv.Itoa(len(m.keys)) + " keys"
	default:
		return "key " + m.key.String()
	}
}

// Lock acquires the lock, blocking until the server grants it, the
// WithTimeout bound passes or ctx is done: one round trip when the lock is
// free, a wait in the server on a session of its own when it is not (with
// PinConnection, on a pooled connection that stays pinned to the returned
// Lock until it is released). A wait whose connection
// ends before the grant waits again on a fresh one, within the same bound
// (see the package documentation, and [RetryHook]).
// On failure it holds nothing and returns an error matching
// context.DeadlineExceeded (also for a server still unreachable when the
// bound passed), context.Canceled, ErrStandby, ErrPooler, ErrPrivilege (with
// WithFencing) or ErrInvalidArgument, or the driver's error.
func (m *Mutex) Lock(ctx context.Context) (*Lock, error) {
	return m.lock(ctx, false)
}

// TryLock acquires the lock if it is free, without waiting: one round trip.
// When another session holds it in a conflicting mode, TryLock returns an
// error matching [ErrLocked]. Other failures are reported as by Lock; a lost
// connection is one of them: TryLock never retries.
func (m *Mutex) TryLock(ctx context.Context) (*Lock, error) {
	return m.lock(ctx, true)
}
