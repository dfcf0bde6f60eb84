package advisorylock

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// statements holds a Mutex's SQL, built once so the lock path formats nothing
// but a timeout. A Mutex locks one key or a set of keys; a set is locked in one
// statement, key after key in a fixed order (see sortKeys), so that two
// callers locking overlapping sets cannot deadlock. The SQL with placeholders
// depends only on the keys' kinds, the mode and the scope: it is shared by
// every Mutex of the same shape (a held lock's Mutex costs a few hundred
// bytes).
type statements struct {
	args    []any    // the keys, as arguments
	keyText [][]byte // the keys, as text arguments of lock sessions' statements
	n       int      // how many keys
	keys    []Key    // for the SQL with literal keys
	shared  string   // "_shared" in shared mode, for the function names
	seq     string   // the fencing sequence's regclass literal; "" without fencing
	*sqlShape
}

// sqlShape is the SQL of a shape of Mutex.
type sqlShape struct {
	// Session scope on a pinned connection, extended protocol, with the keys
	// and the expected backend pid as arguments. With fencing, each lock
	// statement returns the token as well (see fencing.go).
	lock        string
	lockTimeout string // lock_timeout as the argument after the backend pid
	try         string // one bool, or an array of n for a set
	unlock      string // a row if every key was released, none otherwise

	// Session scope on lock sessions, prepared on each.
	tryStmt    *pgwire.Stmt // one bool, or an array of n for a set
	unlockStmt *pgwire.Stmt // a row if every key was released, none otherwise

	// Transaction scope, queued after BEGIN in one batch (one round trip).
	xactLock        string
	xactLockTimeout string // lock_timeout as the argument after the keys
	xactTry         string
}

// shapeKey identifies a sqlShape.
type shapeKey struct {
	kinds        string // 'b' for a bigint key, 'p' for a pair, in order
	mode         Mode
	scope        Scope
	checkBackend bool
	seq          string // the fencing sequence; "" without fencing
}

// shapes caches the sqlShapes made so far, by shapeKey.
var shapes sync.Map

// lockCallsLit returns the lock calls with the keys as literals.
func (s statements) lockCallsLit() string {
	return literalCalls("pg_advisory_lock"+s.shared, s.keys)
}

// tryLit and unlockLit are the lock sessions' try and unlock with the keys as
// literals, for AllowPooler: a pooler may run each query on another backend,
// where a prepared statement does not exist.
func (s statements) tryLit() string {
	c := literalCalls("pg_try_advisory_lock"+s.shared, s.keys)
	if s.n > 1 {
		c = "array[" + c + "]"
	}
	if s.seq != "" {
		return fencedTry(c, "", s.n > 1, s.seq)
	}
	return "select " + c
}

// waitLit is a lock session's wait, with the keys as literals, bounded by
// lock_timeout when bound > 0.
func (s statements) waitLit(bound time.Duration) string {
	sql := "select " + s.lockCallsLit()
	if bound > 0 && bound <= maxLockTimeout {
		sql = "select pg_catalog.set_config('lock_timeout', '" + timeoutMillis(bound) + "', true), " + s.lockCallsLit()
	}
	if s.seq != "" {
		return fencedLock(sql, s.seq)
	}
	return sql
}

func (s statements) unlockLit() string {
	c := literalCalls("pg_advisory_unlock"+s.shared, s.keys)
	if s.n > 1 {
		c = "true = all(array[" + c + "])"
	}
	return "select 1 where " + c
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

func newStatements(keys []Key, mode Mode, scope Scope, checkBackend bool, seq string) statements {
	s := statements{n: len(keys), keys: keys, seq: seq}
	if mode == ModeShared {
		s.shared = "_shared"
	}
	kinds := make([]byte, len(keys))
	for i, k := range keys {
		s.args = append(s.args, k.args()...)
		kinds[i] = 'b'
		if k.pair {
			kinds[i] = 'p'
		}
	}
	s.args = slices.Clip(s.args) // see Mutex.withArgs
	if scope == ScopeSession {
		for _, a := range s.args {
			s.keyText = append(s.keyText, fmt.Append(nil, a))
		}
	}
	sk := shapeKey{string(kinds), mode, scope, checkBackend, seq}
	if v, ok := shapes.Load(sk); ok {
		s.sqlShape = v.(*sqlShape)
		return s
	}
	v, _ := shapes.LoadOrStore(sk, newShape(keys, s.shared, scope, checkBackend, seq))
	s.sqlShape = v.(*sqlShape)
	return s
}

func newShape(keys []Key, shared string, scope Scope, checkBackend bool, seq string) *sqlShape {
	s := &sqlShape{}
	set := len(keys) > 1
	if scope == ScopeSession {
		unlockCond := boolCalls("pg_advisory_unlock"+shared, keys)
		if len(keys) > 1 {
			unlockCond = "true = all(" + unlockCond + ")"
		}
		tryCalls := boolCalls("pg_try_advisory_lock"+shared, keys)
		s.tryStmt = stmt("select " + tryCalls)
		if seq != "" {
			s.tryStmt = stmt(fencedTry(tryCalls, "", set, seq))
		}
		s.unlockStmt = stmt("select 1 where " + unlockCond)
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
		s.try = "select " + tryCalls + guard
		if seq != "" {
			s.lock, s.lockTimeout = fencedLock(s.lock, seq), fencedLock(s.lockTimeout, seq)
			s.try = fencedTry(tryCalls, guard, set, seq)
		}
		// The unlock returns a row when every key was held and released, and
		// none otherwise: Exec's command tag says which, without a row to
		// decode. ARRAY[...] evaluates every call before ALL compares.
		s.unlock = "select 1 where " + unlockCond
		return s
	}
	lock, p := calls("pg_advisory_xact_lock"+shared, keys)
	s.xactLock = "select " + lock
	xactTryCalls := boolCalls("pg_try_advisory_xact_lock"+shared, keys)
	s.xactTry = "select " + xactTryCalls
	// Inside the transaction, lock_timeout is set for the lock calls only and
	// restored, in the same statement, to what it was before: the user's
	// statements in the transaction never see it. The subquery (kept apart by
	// OFFSET 0) evaluates its target list left to right: save, set, lock; the
	// outer select then restores.
	restore, inner := "select pg_catalog.set_config('lock_timeout', s.prev, true)", " from (select pg_catalog.current_setting('lock_timeout') as prev, pg_catalog.set_config('lock_timeout', $"+strconv.Itoa(p)+", true), "+lock+" offset 0) s"
	s.xactLockTimeout = restore + inner
	if seq != "" {
		// The outer select draws the token, after the subquery's lock calls.
		s.xactLock = fencedLock(s.xactLock, seq)
		s.xactTry = fencedTry(xactTryCalls, "", set, seq)
		s.xactLockTimeout = restore + ", pg_catalog.nextval(" + seq + ")" + inner
	}
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
