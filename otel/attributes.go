package advisorylockotel

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/advisorylock/advisorylock/internal/lockid"
)

// Span names. They name the operation only, never a lock, so they stay few.
const (
	// AcquireSpanName is the name of the span of an acquisition: Lock,
	// TryLock, or WithLock's wait.
	AcquireSpanName = "advisorylock.acquire"
	// HoldSpanName is the name of the span of a held lock, from acquisition to
	// release or loss.
	HoldSpanName = "advisorylock.hold"
)

// Attribute keys of this instrumentation. The database is also recorded with
// the semantic convention db.system.name = "postgresql", and failures with
// error.type and, for server errors, db.response.status_code.
const (
	// LockNameKey is the lock's name, recorded with LockNameFull.
	LockNameKey = attribute.Key("advisorylock.lock.name")
	// LockNameHashKey is HashLockName of the lock's name, recorded with
	// LockNameHashed (the default).
	LockNameHashKey = attribute.Key("advisorylock.lock.name_hash")
	// LockKeyKey is the lock's key as advisorylock.Key.String formats it:
	// "(k1,k2)" for a pair key, as pg_locks shows it in classid and objid, or
	// the decimal bigint.
	LockKeyKey = attribute.Key("advisorylock.lock.key")
	// LockModeKey is the lock's mode: "exclusive" or "shared".
	LockModeKey = attribute.Key("advisorylock.lock.mode")
	// LockScopeKey is the lock's scope: "session" or "transaction".
	LockScopeKey = attribute.Key("advisorylock.lock.scope")
	// TryKey is true for TryLock, which never waits.
	TryKey = attribute.Key("advisorylock.try")
	// TimeoutKey is the bound on an acquisition's wait, in seconds, when there
	// is one: the earlier of WithTimeout and the context's deadline.
	TimeoutKey = attribute.Key("advisorylock.timeout_seconds")
	// OutcomeKey is how an acquisition ended, as advisorylock.Outcome.String
	// says: "acquired", "busy", "timeout", "canceled" or "error".
	OutcomeKey = attribute.Key("advisorylock.outcome")
	// LostKey is true on a hold span whose lock was lost, and absent
	// otherwise.
	LostKey = attribute.Key("advisorylock.lost")
	// TokenKey is the fencing token of a lock taken with
	// advisorylock.WithFencing (advisorylock.Lock.Token), on the acquire
	// span of an acquisition that got the lock and on the hold span; absent
	// without fencing.
	TokenKey = attribute.Key("advisorylock.token")
	// RetryKey is, on a retry event, which retry of the acquisition it is:
	// 1 for the first.
	RetryKey = attribute.Key("advisorylock.retry.number")
	// RetryDelayKey is, on a retry event, the pause before the retry, in
	// seconds.
	RetryDelayKey = attribute.Key("advisorylock.retry.delay_seconds")
)

// LostEventName is the name of the event added to a hold span when its lock
// is lost.
const LostEventName = "advisorylock.lost"

// RetryEventName is the name of the event added to an acquisition's span when
// its wait lost its connection before the grant and starts again
// (advisorylock.RetryHook), with RetryKey, RetryDelayKey and the error.type of
// why the previous attempt ended.
const RetryEventName = "advisorylock.retry"

// HashLockName returns the hash recorded for name under LockNameHashed: the
// first 16 hexadecimal digits of the SHA-256 of its UTF-8 bytes, as
// `printf %s "$name" | sha256sum | cut -c1-16` prints them.
func HashLockName(name string) string { return lockid.Hash(name) }
