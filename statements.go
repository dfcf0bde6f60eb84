package advisorylock

import (
	"strconv"
	"time"
)

// statements holds a Mutex's SQL, built once so the lock path formats nothing
// but a timeout.
type statements struct {
	args []any // the key, as arguments

	// Session scope, extended protocol with the key as arguments.
	lock        string
	lockTimeout string // lock_timeout as the argument after the key
	try         string
	unlock      string

	// Transaction scope: queued after BEGIN in one batch (one round trip).
	xactLock        string
	xactLockTimeout string // lock_timeout as the argument after the key
	xactTry         string
}

// cleanupSQL releases every session-level advisory lock of a connection whose
// acquisition failed, and says how many it found. After a failed or cancelled
// wait nothing can be assumed: PostgreSQL keeps a grant that lands as the
// timeout or cancel fires, while the statement still reports the error. The
// count comes first in the target list, so it is taken before the unlock.
const cleanupSQL = "select (select count(*)::int from pg_catalog.pg_locks where locktype = 'advisory' and pid = pg_catalog.pg_backend_pid() and granted), pg_catalog.pg_advisory_unlock_all()"

func newStatements(k Key, mode Mode, scope Scope) statements {
	shared := ""
	if mode == ModeShared {
		shared = "_shared"
	}
	params, next := "$1", "$2"
	if k.pair {
		params, next = "$1,$2", "$3"
	}
	s := statements{args: k.args()}
	if scope == ScopeSession {
		s.lock = "select pg_catalog.pg_advisory_lock" + shared + "(" + params + ")"
		// set_config(..., true) outside a transaction block lasts for the
		// statement's implicit transaction only: the setting cannot leak onto
		// the pooled connection, and no round trip is spent resetting it.
		s.lockTimeout = "select pg_catalog.set_config('lock_timeout', " + next + ", true), pg_catalog.pg_advisory_lock" + shared + "(" + params + ")"
		s.try = "select pg_catalog.pg_try_advisory_lock" + shared + "(" + params + ")"
		s.unlock = "select pg_catalog.pg_advisory_unlock" + shared + "(" + params + ")"
		return s
	}
	s.xactLock = "select pg_catalog.pg_advisory_xact_lock" + shared + "(" + params + ")"
	s.xactTry = "select pg_catalog.pg_try_advisory_xact_lock" + shared + "(" + params + ")"
	// Inside the transaction, lock_timeout is set for the lock call only and
	// restored, in the same statement, to what it was before: the user's
	// statements in the transaction never see it. The subquery (kept apart by
	// OFFSET 0) evaluates its target list left to right: save, set, lock; the
	// outer select then restores.
	s.xactLockTimeout = "select pg_catalog.set_config('lock_timeout', s.prev, true) from (select pg_catalog.current_setting('lock_timeout') as prev, pg_catalog.set_config('lock_timeout', " + next + ", true), pg_catalog.pg_advisory_xact_lock" + shared + "(" + params + ") offset 0) s"
	return s
}

// timeoutMillis renders d for lock_timeout, in whole milliseconds rounded up:
// lock_timeout has millisecond resolution and 0 would mean no limit.
func timeoutMillis(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms < 1 {
		ms = 1
	}
	// lock_timeout is an int4 of milliseconds.
	if ms > 1<<31-1 {
		ms = 1<<31 - 1
	}
	return strconv.FormatInt(int64(ms), 10)
}
