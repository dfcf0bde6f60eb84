package advisorylock

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// statements holds a Mutex's SQL, built once so the lock path formats nothing
// but a timeout. A Mutex locks one key or a set of keys; a set is locked in one
// statement, key after key in a fixed order (see sortKeys), so that two
// callers locking overlapping sets cannot deadlock.
type statements struct {
	args []any // the keys, as arguments
	n    int   // how many keys

	// Session scope, extended protocol, with the keys and the expected
	// backend pid as arguments.
	lock        string
	lockTimeout string // lock_timeout as the argument after the backend pid
	try         string // one bool, or an array of n for a set
	unlock      string // a row if every key was released, none otherwise

	// Session scope on lock sessions: the simple query protocol, with the
	// keys as literals (see literalCalls).
	lockLit      string       // the lock calls after "select "
	lockCallsLit string       // the lock calls alone, for a lock_timeout before them
	tryStmt      *pgwire.Stmt // one bool, or an array of n for a set
	unlockStmt   *pgwire.Stmt // a row if every key was released, none otherwise
	keyText      [][]byte     // the keys, as the statements' arguments
	// With AllowPooler, literal SQL: a pooler may run each query on
	// another backend, where a prepared statement does not exist.
	tryLit    string
	unlockLit string

	// Transaction scope, queued after BEGIN in one batch (one round trip).
	xactLock        string
	xactLockTimeout string // lock_timeout as the argument after the keys
	xactTry         string
}

// cleanupSQL releases every session-level advisory lock of a connection whose
// acquisition failed, and says how many it found. After a failed or cancelled
// wait nothing can be assumed: PostgreSQL keeps a grant that lands as the
// timeout or cancel fires, while the statement still reports the error. The
// count comes first in the target list, so it is taken before the unlock.
const cleanupSQL = "select (select count(*)::int from pg_catalog.pg_locks where locktype = 'advisory' and pid = pg_catalog.pg_backend_pid() and granted), pg_catalog.pg_advisory_unlock_all()"

// sortKeys orders keys and drops duplicates: bigint keys before pair keys,
// each by value. Any fixed total order prevents deadlocks between sets.
func sortKeys(keys []Key) []Key {
	keys = slices.Clone(keys)
	cmp := func(a, b Key) int {
		switch {
		case a.pair != b.pair:
			if a.pair {
				return 1
			}
			return -1
		case a.k != b.k:
			return compare(a.k, b.k)
		case a.k1 != b.k1:
			return compare(a.k1, b.k1)
		default:
			return compare(a.k2, b.k2)
		}
	}
	slices.SortFunc(keys, cmp)
	return slices.CompactFunc(keys, func(a, b Key) bool { return a == b })
}

func compare[T int32 | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// calls renders fn applied to each key, with placeholders numbered from 1,
// joined by ", ", and returns the next free placeholder number.
func calls(fn string, keys []Key) (string, int) {
	var b strings.Builder
	p := 1
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("pg_catalog.")
		b.WriteString(fn)
		b.WriteString("($")
		b.WriteString(strconv.Itoa(p))
		p++
		if k.pair {
			b.WriteString(",$")
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteString(")")
	}
	return b.String(), p
}

// stmt returns the prepared statement of sql, named after it: the same SQL
// gets the same name in every Mutex, and so is prepared once per lock session.
func stmt(sql string) *pgwire.Stmt {
	h := fnv.New64a()
	h.Write([]byte(sql))
	return &pgwire.Stmt{Name: "advisorylock_" + strconv.FormatUint(h.Sum64(), 36), SQL: sql}
}

// literalCalls renders fn applied to each key, joined by ", ", with the keys
// as typed literals: the simple query protocol has no parameters, and a key is
// a number, never text from outside. The literals are quoted and cast, since
// the smallest bigint is not a valid numeric literal.
func literalCalls(fn string, keys []Key) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("pg_catalog.")
		b.WriteString(fn)
		if k.pair {
			b.WriteString("('" + strconv.FormatInt(int64(k.k1), 10) + "'::int4,'" + strconv.FormatInt(int64(k.k2), 10) + "'::int4)")
		} else {
			b.WriteString("('" + strconv.FormatInt(k.k, 10) + "'::int8)")
		}
	}
	return b.String()
}

// boolCalls is calls for functions answering a bool: the bool itself for
// one key, an array of them for a set.
func boolCalls(fn string, keys []Key) string {
	c, _ := calls(fn, keys)
	if len(keys) == 1 {
		return c
	}
	return "array[" + c + "]"
}

func newStatements(keys []Key, mode Mode, scope Scope, checkBackend bool) statements {
	shared := ""
	if mode == ModeShared {
		shared = "_shared"
	}
	s := statements{n: len(keys)}
	for _, k := range keys {
		s.args = append(s.args, k.args()...)
	}
	s.args = slices.Clip(s.args) // see Mutex.withArgs
	if scope == ScopeSession {
		s.lockCallsLit = literalCalls("pg_advisory_lock"+shared, keys)
		s.lockLit = "select " + s.lockCallsLit
		for _, a := range s.args {
			s.keyText = append(s.keyText, fmt.Append(nil, a))
		}
		unlock := boolCalls("pg_advisory_unlock"+shared, keys)
		if len(keys) > 1 {
			unlock = "true = all(" + unlock + ")"
		}
		s.tryStmt = stmt("select " + boolCalls("pg_try_advisory_lock"+shared, keys))
		s.unlockStmt = stmt("select 1 where " + unlock)
		tryLit := literalCalls("pg_try_advisory_lock"+shared, keys)
		unlockLit := literalCalls("pg_advisory_unlock"+shared, keys)
		if len(keys) > 1 {
			tryLit = "array[" + tryLit + "]"
			unlockLit = "true = all(array[" + unlockLit + "])"
		}
		s.tryLit = "select " + tryLit
		s.unlockLit = "select 1 where " + unlockLit
		lock, p := calls("pg_advisory_lock"+shared, keys)
		// The session statements take the lock only when the backend running
		// them is the one the connection announced at start-up (the argument
		// after the keys): behind a pooler such as PgBouncer the announced
		// process is the pooler's, and a session lock could be stranded on a
		// backend another client gets next. The condition has no column
		// reference, so the planner makes it a one-time filter, evaluated
		// before the lock calls; a mismatch returns no row and locks nothing.
		guard, timeoutParam := " where pg_catalog.pg_backend_pid()::int8 = $"+strconv.Itoa(p), "$"+strconv.Itoa(p+1)
		if !checkBackend {
			guard, timeoutParam = "", "$"+strconv.Itoa(p)
		}
		s.lock = "select " + lock + guard
		// set_config(..., true) outside a transaction block lasts for the
		// statement's implicit transaction only: the setting cannot leak onto
		// the pooled connection, and no round trip is spent resetting it.
		s.lockTimeout = "select pg_catalog.set_config('lock_timeout', " + timeoutParam + ", true), " + lock + guard
		s.try = "select " + boolCalls("pg_try_advisory_lock"+shared, keys) + guard
		// The unlock returns a row when every key was held and released, and
		// none otherwise: Exec's command tag says which, without a row to
		// decode. ARRAY[...] evaluates every call before ALL compares.
		cond := boolCalls("pg_advisory_unlock"+shared, keys)
		if len(keys) > 1 {
			cond = "true = all(" + cond + ")"
		}
		s.unlock = "select 1 where " + cond
		return s
	}
	lock, p := calls("pg_advisory_xact_lock"+shared, keys)
	s.xactLock = "select " + lock
	s.xactTry = "select " + boolCalls("pg_try_advisory_xact_lock"+shared, keys)
	// Inside the transaction, lock_timeout is set for the lock calls only and
	// restored, in the same statement, to what it was before: the user's
	// statements in the transaction never see it. The subquery (kept apart by
	// OFFSET 0) evaluates its target list left to right: save, set, lock; the
	// outer select then restores.
	s.xactLockTimeout = "select pg_catalog.set_config('lock_timeout', s.prev, true) from (select pg_catalog.current_setting('lock_timeout') as prev, pg_catalog.set_config('lock_timeout', $" + strconv.Itoa(p) + ", true), " + lock + " offset 0) s"
	return s
}

// timeoutMillis renders d for lock_timeout, in whole milliseconds rounded up:
// lock_timeout has millisecond resolution and 0 would mean no limit.
func timeoutMillis(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(int64(ms), 10)
}

// allTrue reports whether every answer of a set's try or unlock was true.
func allTrue(bs []bool) bool {
	for _, b := range bs {
		if !b {
			return false
		}
	}
	return len(bs) > 0
}
