// Package advisorylockslog logs advisorylock's locks through log/slog, as
// pgx's tracelog logs queries: the waits, timeouts, holds and losses worth a
// line, as structured records, at levels the caller sets. It needs no
// OpenTelemetry.
//
// The package lives in the directory slog of the module and is imported as
// github.com/advisorylock/advisorylock/slog; its name is advisorylockslog, so
// that it does not clash with log/slog in the code that uses both.
//
// NewHook returns a Hook to pass to advisorylock.WithHooks:
//
//	hook := advisorylockslog.NewHook(logger, advisorylockslog.WithHoldThreshold(time.Minute))
//	m := advisorylock.New(pool, "nightly-report", advisorylock.WithHooks(hook))
//
// # Records
//
// Each record's message names its Event, which sets its level:
//
//   - EventWait, "advisorylock: long wait" (info): a lock acquired, or a wait
//     cancelled, after waiting at least the wait threshold (WithWaitThreshold,
//     one second unless set).
//   - EventTimeout, "advisorylock: timeout" (warn): a wait that ran out, by
//     WithTimeout or the context's deadline.
//   - EventHold, "advisorylock: long hold" (info): a lock released after being
//     held at least the hold threshold (WithHoldThreshold; none unless set).
//   - EventLost, "advisorylock: lock lost" (error): a lock lost while held.
//   - EventError, "advisorylock: error" (error): an acquisition or a release
//     that failed otherwise.
//   - EventRetry, "advisorylock: retry" (warn): a wait that lost its
//     connection before the grant (a terminated backend, a restart, a
//     failover) and starts again; with retry (1 for the first), delay (the
//     pause before it) and err (why the previous attempt ended).
//
// A busy TryLock is an answer, not an event: it is never logged. WithLevel
// sets an event's level.
//
// Every record has the group lock: its key, its mode, its scope and, per
// WithLockName, its name, the name's hash (name_hash, the default) or
// nothing, since names can carry customer ids. Then, as the event has them:
// wait (a duration), outcome ("acquired" or "canceled", for a long wait),
// held (a duration), and err, the error's text, in which the lock's name is
// replaced by its key unless WithLockName(LockNameFull) is given. With
// slog's text handler:
//
//	time=2026-12-01T16:06:59.986Z level=WARN msg="advisorylock: timeout" lock.key=(280642407,-2017152350) lock.name_hash=6743ba10a2b2c487 lock.mode=exclusive lock.scope=session wait=517.443694ms err="advisorylock: lock key (280642407,-2017152350): context deadline exceeded: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)"
//
// The pool's connection string is never logged: a failure to connect is
// described by the driver's error, which names the host, the user and the
// database, never the password.
//
// # Cost
//
// The Hook keeps nothing between calls and allocates nothing unless it logs:
// for an event whose level the logger does not enable, and for a wait or a
// hold under its threshold, it only compares. See BenchmarkWithLock in the
// package's tests.
package advisorylockslog // import "github.com/advisorylock/advisorylock/slog"
