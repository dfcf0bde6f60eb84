package advisorylock

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Match them with [errors.Is]: the errors this package returns
// wrap them, often together with a driver error or a context error.
var (
	// ErrLocked reports that TryLock found the lock held, in a conflicting
	// mode, by another session.
	ErrLocked = errors.New("advisorylock: locked by another session")

	// ErrNotHeld reports an Unlock (or a use of the lock's transaction) after
	// the lock was already released.
	ErrNotHeld = errors.New("advisorylock: lock not held")

	// ErrLockLost reports that a held lock can no longer be guaranteed: its
	// session ended, its connection broke, or the server stopped answering.
	// Another session may hold the lock now.
	ErrLockLost = errors.New("advisorylock: lock lost")

	// ErrStandby reports that the server is a hot standby. Advisory locks
	// there are local to the standby and exclude nobody on the primary, so
	// the package refuses to take them. Connect to the primary.
	ErrStandby = errors.New("advisorylock: server is a hot standby")

	// ErrPooler reports a session-scoped lock refused because the connection
	// goes through a connection pooler: the backend running the statement is
	// not the server process the connection announced. In transaction pooling
	// mode (PgBouncer's pool_mode=transaction) the lock would be stranded on a
	// backend that other clients get next. Use [TransactionScope], connect to
	// PostgreSQL directly, or, for a pooler in session mode, [AllowPooler].
	ErrPooler = errors.New("advisorylock: session lock through a connection pooler")

	// ErrTxManaged reports an attempt to commit or roll back, through the
	// transaction handed out by a transaction-scoped lock, the transaction
	// the lock lives in. Release the lock instead ([Lock.Unlock] commits,
	// [Lock.Rollback] rolls back).
	ErrTxManaged = errors.New("advisorylock: transaction managed by the lock")

	// ErrLockTable reports a lock the server could not grant because its
	// lock table is full (SQLSTATE 53200, out of shared memory). Advisory
	// locks share the table with every other lock; it has room for
	// max_locks_per_transaction × (max_connections + max_prepared_transactions)
	// entries (6,400 by default). Raise max_locks_per_transaction, or hold
	// fewer locks at once. Nothing else is disturbed: the call fails, and
	// what was held stays held.
	ErrLockTable = errors.New("advisorylock: server lock table full (raise max_locks_per_transaction)")

	// ErrPrivilege reports that the database role lacks a privilege on an
	// object the package uses or would create, such as the fencing sequence
	// ([WithFencing]). The error is a [*PrivilegeError], which names the
	// role, the privilege and the object; the package documentation gives the
	// SQL a DBA can run instead.
	ErrPrivilege = errors.New("advisorylock: insufficient privilege")

	// ErrInvalidArgument is wrapped by every error about bad input: an empty
	// name, a nil pool, Mutex or function, a negative duration. Such errors
	// are returned before any round trip to the server; the message says
	// which argument was wrong.
	ErrInvalidArgument = errors.New("advisorylock: invalid argument")
)

// Bad input, each reported as ErrInvalidArgument.
var (
	errEmptyName = invalid("empty lock name")
	errNilPool   = invalid("nil pool")
	errNilMutex  = invalid("nil Mutex")
	errNilFunc   = invalid("nil function")
)

// A PrivilegeError reports a privilege the database role lacks: Privilege on
// On, needed for Purpose. It matches [ErrPrivilege].
type PrivilegeError struct {
	Role      string // the role (current_user)
	Privilege string // "CREATE", "USAGE", "USAGE or UPDATE", "SELECT and INSERT", ...
	On        string // the object lacking it, as SQL names it: `schema "public"`
	Purpose   string // what it is needed for: `to create sequence "public"."advisorylock_fencing"`; may be ""
}

// Error returns "advisorylock: role "app" lacks CREATE on schema "public",
// needed to create ...".
func (e *PrivilegeError) Error() string {
	s := prefix + "role " + strconv.Quote(e.Role) + " lacks " + e.Privilege + " on " + e.On
	if e.Purpose != "" {
		s += ", needed " + e.Purpose
	}
	return s
}

// Is reports whether target is ErrPrivilege.
func (e *PrivilegeError) Is(target error) bool { return target == ErrPrivilege }

// invalid returns an error matching ErrInvalidArgument that says what was
// wrong.
func invalid(what string) error { return &Error{Err: &argError{what}} }

// argError is bad input: its text says what, and it matches
// ErrInvalidArgument.
type argError struct{ what string }

func (e *argError) Error() string { return e.what }
func (e *argError) Is(target error) bool {
	return target == ErrInvalidArgument
}

// An Error is a failed call: which operation, on which lock, and why. Every
// error this package returns is one, so its message carries one prefix,
// "advisorylock: ", followed by the operation and the lock. Callers branch on
// what it wraps, with [errors.Is] (the sentinels above, context errors) and
// [errors.As] (the driver's errors, such as *pgconn.PgError); Op and Lock are
// for messages and logs.
type Error struct {
	Op   string // the call: "lock", "trylock", "unlock", "rollback", "holders"; "" for bad input
	Lock string // the lock, as [Mutex.String] describes it; "" for bad input
	Err  error  // the cause
}

// Error returns "advisorylock: op lock: cause", with the "advisorylock: "
// prefixes of the errors in the cause dropped, so that it is said once.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(prefix)
	if e.Op != "" {
		b.WriteString(e.Op)
		if e.Lock != "" {
			b.WriteByte(' ')
			b.WriteString(e.Lock)
		}
		b.WriteString(": ")
	}
	if e.Err == nil {
		b.WriteString("unknown error")
	} else {
		text := strings.TrimPrefix(e.Err.Error(), prefix)
		b.WriteString(strings.ReplaceAll(text, ": "+prefix, ": "))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

const prefix = "advisorylock: "

// wrapErrs joins a sentinel (or context error) and its cause into one error
// that matches both: "sentinel: cause".
func wrapErrs(errs ...error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return fmt.Errorf("%w: %w", errs[0], wrapErrs(errs[1:]...))
	}
}
