package advisorylock

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A Mutex is a PostgreSQL advisory lock, identified by a name or a Key, on a
// pgxpool.Pool. It is safe for concurrent use: each successful Lock or TryLock
// returns its own *Lock, held by its own database session, so two goroutines of
// one process exclude each other just as two processes do (shared mode
// excepted).
//
// A Mutex holds no state on the server and needs no closing. The zero Mutex is
// not usable; create one with New or NewWithKey.
type Mutex struct {
	pool  *pgxpool.Pool
	name  string
	key   Key   // the first of keys
	keys  []Key // in locking order; more than one for a set
	cfg   config
	hooks *hookSet // nil when no hooks are set
	err   error    // bad input, reported by every call
	sql   statements

	// racedGrants counts session-level locks found held, and released,
	// after an acquisition that reported failure: grants that raced a
	// timeout or cancel. For the tests.
	racedGrants atomic.Int64
}

// New returns a Mutex for the lock called name, on pool. The name maps to a key
// as the npm package advisory-lock does (see KeyFromName), so Go and Node.js
// processes using the same name share the lock.
//
// New does no I/O and never fails: an empty name, a nil pool or an invalid
// option is reported, as an error wrapping ErrInvalidArgument, by every call
// on the Mutex, before any round trip.
func New(pool *pgxpool.Pool, name string, opts ...Option) *Mutex {
	m := newMutex(pool, []Key{KeyFromName(name)}, opts)
	m.name = name
	if name == "" && m.err == nil {
		m.err = errEmptyName
	}
	return m
}

// NewWithKey returns a Mutex for an explicit key, for interoperating with
// other tools that take advisory locks by number. See Int64Key and PairKey.
// Like New, it does no I/O and reports bad input on every call.
func NewWithKey(pool *pgxpool.Pool, key Key, opts ...Option) *Mutex {
	return newMutex(pool, []Key{key}, opts)
}

// NewSet returns a Mutex over the locks called names, taken and released
// together, on one connection and in one round trip. The keys are locked in
// a fixed order, the same in every process, so two callers locking
// overlapping sets cannot deadlock each other. Every option applies to the
// set as a whole: WithTimeout bounds the wait for all of them, Shared takes
// all in shared mode, TransactionScope takes all in one transaction. A set's
// Key is its first key in that order. Duplicate names count once.
//
// Like New, it does no I/O; no names, an empty one, or more than MaxSetKeys
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
	m.sql = newStatements(keys, m.cfg.mode, m.cfg.scope, !m.cfg.allowPooler)
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
	case m.name != "":
		return strconv.Quote(m.name)
	case len(m.keys) > 1:
		return "set of " + strconv.Itoa(len(m.keys)) + " keys"
	default:
		return "key " + m.key.String()
	}
}

// Lock acquires the lock, blocking until it is granted, the WithTimeout bound
// passes or ctx is done. The wait happens in the server (pg_advisory_lock and
// friends), not by polling; it occupies one pooled connection, which stays
// pinned to the returned Lock until it is released.
//
// On failure Lock returns an error and holds nothing: a timeout matches
// context.DeadlineExceeded, a cancellation matches context.Canceled, a hot
// standby matches ErrStandby, bad input matches ErrInvalidArgument. A timeout or
// cancellation costs no reconnect: the server cancels the wait and the
// connection goes back to the pool once it is proven to hold no advisory lock
// (a grant that raced the cancellation is released first).
func (m *Mutex) Lock(ctx context.Context) (*Lock, error) {
	return m.lock(ctx, false)
}

// TryLock acquires the lock if it is free, without waiting. When another
// session holds it in a conflicting mode, TryLock returns an error matching
// ErrLocked. Other failures are reported as by Lock.
func (m *Mutex) TryLock(ctx context.Context) (*Lock, error) {
	return m.lock(ctx, true)
}

// lockState is where a Lock is in its life.
type lockState uint8

const (
	stateHeld lockState = iota
	stateReleasing
	stateReleased
	stateLost
)

// A Lock is a held advisory lock, returned by Mutex.Lock and Mutex.TryLock.
// It is safe for concurrent use and may be released from any goroutine.
type Lock struct {
	m        *Mutex
	conn     *pgxpool.Conn // pinned while held
	pid      int32         // the server process of conn's session
	tx       pgx.Tx        // the lock's transaction, in transaction scope
	acquired time.Time     // set when hooks are in use
	hctx     context.Context

	mu    sync.Mutex
	state lockState
	err   error // why the lock was lost, once it was
	// destroyed is closed once the connection of a lock lost while held is
	// closed; nil otherwise.
	destroyed chan struct{}
	done      chan struct{}
	onLost    context.CancelCauseFunc // WithLock's context, cancelled on loss
	watch     *watcher
	gate      *gate       // this process's queue for the lock, left on release
	guard     *time.Timer // bounds WithLock's release; see releaseWithin
}

// Mutex returns the Mutex the lock was taken from.
func (l *Lock) Mutex() *Mutex { return l.m }

// PID returns the server process id (pg_backend_pid) of the session that
// holds the lock, as pg_locks and pg_stat_activity show it, or 0 once the
// lock is released or lost.
func (l *Lock) PID() int32 {
	if !l.held() {
		return 0
	}
	return l.pid
}

// Done returns a channel that is closed when the lock is released or lost.
// Session-scoped locks are watched while held (see WithKeepalive): a lost
// session closes Done within moments, a silent network within the keepalive
// bound. Transaction-scoped locks notice a loss at the next statement run in
// their transaction, or at release.
func (l *Lock) Done() <-chan struct{} { return l.done }

// Err returns nil while the lock is held. Once Done is closed, it returns an
// error matching ErrLockLost if the lock was lost, or ErrNotHeld if it was
// released.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == stateReleased {
		return l.m.errorf("lock", ErrNotHeld)
	}
	return l.err
}

// Tx returns the transaction a transaction-scoped lock lives in, or nil for a
// session-scoped lock. Statements run through it commit or roll back with the
// lock. Its Commit and Rollback return ErrTxManaged: end the transaction with
// Unlock (commit) or Rollback. After release it returns ErrNotHeld.
func (l *Lock) Tx() pgx.Tx {
	if l.tx == nil {
		return nil
	}
	return &lockTx{Tx: l.tx, l: l}
}

// Unlock releases the lock. A session-scoped lock is released with
// pg_advisory_unlock, whose answer is checked; a transaction-scoped lock by
// committing its transaction. Unlock blocks for one round trip.
//
// Whatever Unlock returns, the Lock holds nothing afterwards: when the release
// cannot be completed (an error, ctx done, an unexpected answer), the
// connection is closed, which ends the session and so releases the lock in the
// server, and Unlock returns the error. A lock that was lost returns an error
// matching ErrLockLost; a second Unlock returns one matching ErrNotHeld. A
// commit that the server turned into a rollback returns an error matching
// pgx.ErrTxCommitRollback.
func (l *Lock) Unlock(ctx context.Context) error {
	return l.release(ctx, true)
}

// Rollback releases the lock like Unlock, but a transaction-scoped lock's
// transaction is rolled back instead of committed. For a session-scoped lock it
// is Unlock.
func (l *Lock) Rollback(ctx context.Context) error {
	return l.release(ctx, false)
}
