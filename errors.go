package advisorylock

import (
	"errors"
	"fmt"
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
	// the package refuses to take them.
	ErrStandby = errors.New("advisorylock: server is a hot standby; advisory locks there exclude nobody on the primary")

	// ErrPooler reports a session-scoped lock refused because the connection
	// goes through a connection pooler (the backend running the statement is
	// not the process the connection announced): in transaction pooling mode
	// the lock would be stranded on a backend that other clients get next.
	ErrPooler = errors.New("advisorylock: session-scoped lock through a connection pooler (e.g. PgBouncer in transaction mode) is unsafe; use TransactionScope(), connect to PostgreSQL directly, or AllowPooler() if the pooler runs in session mode")

	// ErrTxManaged reports an attempt to commit or roll back, through the
	// transaction handed out by a transaction-scoped lock, the transaction
	// the lock lives in. Release the lock instead.
	ErrTxManaged = errors.New("advisorylock: the lock's transaction ends when the lock is released")

	// ErrInvalidArgument is wrapped by every error about bad input. Such errors
	// are returned before any round trip to the server.
	ErrInvalidArgument = errors.New("advisorylock: invalid argument")

	// ErrEmptyName reports a Mutex created with an empty lock name.
	ErrEmptyName = fmt.Errorf("%w: empty lock name", ErrInvalidArgument)

	// ErrNilPool reports a Mutex created with a nil pool.
	ErrNilPool = fmt.Errorf("%w: nil pool", ErrInvalidArgument)

	// ErrNilMutex reports Lock, TryLock, Holders or WithLock called with a
	// nil *Mutex. (The accessors, such as Name and String, need a Mutex.)
	ErrNilMutex = fmt.Errorf("%w: nil mutex", ErrInvalidArgument)

	// ErrNilFunc reports WithLock called with a nil function.
	ErrNilFunc = fmt.Errorf("%w: nil function", ErrInvalidArgument)

	// ErrInvalidDuration reports a negative duration given to an option.
	ErrInvalidDuration = fmt.Errorf("%w: negative duration", ErrInvalidArgument)
)
