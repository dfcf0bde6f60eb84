// Package advisorylock provides distributed locks on PostgreSQL advisory
// locks, for Go services that already run PostgreSQL and need "only one of us
// does this at a time": a cron process that must never run twice, a migration
// that exactly one of N replicas runs, a leader among many.
//
// A Mutex names a lock; Lock and TryLock acquire it and return a *Lock;
// WithLock runs a function under it and returns the function's value:
//
//	m := advisorylock.New(pool, "nightly-report", advisorylock.WithTimeout(5*time.Second))
//	n, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
//		return sendReport(ctx)
//	})
//
// # Waiting, timeouts and cancellation
//
// The wait for a lock happens in the server (pg_advisory_lock), never by
// polling: a waiter is woken by the server the moment the lock is free. A
// timeout (WithTimeout, or the context's deadline, whichever is earlier) is
// enforced by the server through lock_timeout, set in the same statement as
// the lock call: it costs no extra round trip, and when it fires the
// connection survives. A cancelled context is passed on to the server as a
// cancel request, so cancelling costs no reconnect either.
//
// Goroutines of one process that wait for the same key, in the same mode, on
// the same pool queue in the process, first come first served, behind the one
// that waits in the server: 200 goroutines waiting for one lock spend one
// pooled connection, not the whole pool. NewSet takes several keys together on
// one connection, always in the same order, so overlapping sets cannot
// deadlock.
//
// # Sessions, connections and the pool
//
// A session-scoped lock (the default) belongs to a database session, so a
// held lock pins one pooled connection. A connection goes back to the pool
// only when it is known to hold no advisory lock: after a release whose
// pg_advisory_unlock said true, or after a failed acquisition whose session
// was then proven clean. Any doubt, and the connection is closed instead, which
// ends the session and so releases whatever it held. This covers PostgreSQL's
// cancel race, in which a grant that lands just as a timeout or cancel fires is
// kept by the server while the statement reports the error.
//
// A transaction-scoped lock (TransactionScope) lives in a transaction begun in
// the same round trip as the lock call; the function's statements can run in
// that transaction (TxFromContext), so its writes commit or roll back with the
// lock. It is the scope that works behind PgBouncer's transaction pooling.
//
// # Lost locks
//
// A held session lock is watched: a blocking read on its idle connection
// notices at once when the server ends the session, and a small probe once per
// keepalive interval (WithKeepalive) notices a network gone silent. A lost lock
// closes Done, reports ErrLockLost from Err and Unlock, and cancels WithLock's
// context with a cause matching ErrLockLost. Between the server releasing a
// lock and the old holder noticing, another holder can start; likewise a lock
// granted to a session that ends before the grant arrives is returned, and its
// loss reported some 20-25ms later, when the watcher starts. Keep the window
// short (see WithKeepalive), and prefer transaction scope where the protected
// work is writes to the same database, since those commit only if the lock's
// transaction does.
//
// # Keys
//
// Names map to keys exactly as the npm package advisory-lock 2.x maps them
// (KeyFromName), so Go and Node.js processes share locks by name. Explicit keys
// (Int64Key, PairKey) interoperate with any other tool.
//
// # Errors
//
// Errors wrap the package's sentinel errors (ErrLocked, ErrNotHeld,
// ErrLockLost, ErrStandby, ErrInvalidArgument and its kin) and, for timeouts
// and cancellations, context.DeadlineExceeded and context.Canceled; match them
// with errors.Is. The driver's error stays reachable with errors.As.
package advisorylock
