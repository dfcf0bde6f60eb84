// Package advisorylock provides distributed locks on PostgreSQL advisory
// locks, for Go services that already run PostgreSQL and need "only one of us
// does this at a time": a cron process that must never run twice, a migration
// that exactly one of N replicas runs, a leader among many (package
// [github.com/advisorylock/advisorylock/election]).
//
// A [Mutex] names a lock; [Mutex.Lock] and [Mutex.TryLock] acquire it and
// return a [*Lock]; [WithLock] runs a function under it and returns the
// function's value:
//
//	m := advisorylock.New(pool, "nightly-report", advisorylock.WithTimeout(5*time.Second))
//	n, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
//		return sendReport(ctx) // ctx is cancelled if the lock is lost
//	})
//
// # Keys
//
// Names map to keys exactly as the npm package advisory-lock 2.x maps them
// ([KeyFromName]), so Go and Node.js processes share locks by name. Explicit
// keys ([Int64Key], [PairKey], [NewWithKey]) interoperate with any other tool
// that takes advisory locks by number. [NewSet] takes several keys together,
// on one connection and in one round trip, always in the same order, so that
// overlapping sets cannot deadlock.
//
// # Waiting, timeouts and cancellation
//
// The wait for a lock happens in the server (pg_advisory_lock), never by
// polling: a waiter is woken by the server the moment the lock is free. A
// timeout ([WithTimeout], or the context's deadline, whichever is earlier) is
// enforced by the server through lock_timeout, set in the same statement as
// the lock call: it costs no extra round trip, and when it fires the
// connection survives. A cancelled context is passed on to the server as a
// cancel request, so cancelling costs no reconnect either.
//
// Goroutines of one process that wait for the same key, in the same mode, on
// the same pool queue in the process, first come first served, behind the one
// that waits in the server: 200 goroutines waiting for one lock spend one
// pooled connection, not the whole pool.
//
// A wait holds nothing until its grant reaches the caller, so a wait whose
// connection ends before that (its backend terminated, the server restarted or
// failed over, the network gone silent) waits again on a fresh connection,
// after a pause that doubles from 20ms up to 2s, within the same bound (the
// timeout and the context), and says so to hooks ([RetryHook]). The session
// it lost has ended, or ends once the server notices, and takes anything it
// was granted meanwhile with it: starting again never makes two holders.
// While it retries, a server that cannot be reached, or that is a hot standby
// (a failover under way), is waited for too; only one still away when the
// bound runs out fails the call, with an error matching
// context.DeadlineExceeded that says why. A server that cannot be reached at
// the first attempt fails the call at once, and [Mutex.TryLock], one round
// trip, never retries.
//
// # Scopes: sessions, transactions and the pool
//
// A session-scoped lock (the default) belongs to a database session. It is
// held on a lock session: a server session the package opens and owns, with
// the connection settings of the Mutex's pool (or [WithSessionPool]'s), never
// on one of the pool's connections. One lock session carries any number of
// locks, and the lock and unlock calls of every goroutine that uses it share
// its round trips (pipelining): a held lock costs no pooled connection and no
// goroutine. An uncontended lock is taken with pg_try_advisory_lock on one of
// at most [DefaultMaxSessions] shared lock sessions ([WithMaxSessions]); a
// lock that must wait does so on a session of its own, which then carries
// it. A lock session that carries nothing for a second is closed; closing the
// pool does not close lock sessions. PostgreSQL's session locks are
// reentrant, so a session is never asked for a key in a mode that conflicts
// with what this process holds: TryLock refuses such a lock at once, and Lock
// waits for it on a session of its own, where the server decides. A caller
// that finds nobody reading a lock session's socket reads its answer itself,
// so an uncontended Lock and Unlock cost what they cost on a connection of
// their own. With [PinConnection], a held lock pins a pooled connection
// instead, watched by a goroutine of its own.
//
// A lock session, or a pinned connection, is kept only while it is known to
// hold what this process believes. After an unlock whose answer is not the
// expected one, a statement that leaves its state unknown, or a server that
// stops answering, it is closed: that ends the session and releases whatever
// it held, and every lock on it is reported lost, never silently dropped. After a failed or cancelled wait the waiting session is
// proven clean, or closed: this covers PostgreSQL's cancel race, in which a
// grant that lands just as a timeout or cancel fires is kept by the server
// while the statement reports the error. When the server's lock table is
// full, a lock fails with [ErrLockTable] and nothing else is disturbed.
//
// A transaction-scoped lock ([TransactionScope]) lives in a transaction begun
// in the same round trip as the lock call; the function's statements run in
// that transaction ([LockFromContext], [Lock.Tx]), so its writes commit or
// roll back with the lock. It is the scope that works behind PgBouncer's
// transaction pooling; session locks there are refused with [ErrPooler]
// unless [AllowPooler] says the pooler runs in session mode. A hot standby is
// refused with [ErrStandby]: its advisory locks exclude nobody on the
// primary.
//
// # Lost locks
//
// A held session lock is watched: its lock session's watcher (or, with
// PinConnection, a blocking read on its idle connection) notices when the
// server ends the session, and a small probe at the keepalive interval
// ([WithKeepalive]), per lock session (or per held lock), notices a network
// gone silent, within two intervals. A lost
// lock closes [Lock.Done], reports [ErrLockLost] from [Lock.Err] and
// [Lock.Unlock], and cancels WithLock's context with a cause matching
// ErrLockLost. Between the server releasing a lock and the old holder
// noticing, another holder can start; likewise a lock granted to a session
// that ends before the grant arrives is returned, and its loss reported as
// soon as the caller has it (on a pinned connection, 20-25ms later, when the
// watcher starts). Keep the window short (see
// WithKeepalive), and prefer transaction scope where the protected work is
// writes to the same database, since those commit only if the lock's
// transaction does.
//
// The server's side of a silent network is bounded too, on lock sessions. By
// itself the server keeps the session of a client that vanished without a
// word, and its locks, until its TCP stack gives up: 2h11m with Linux's
// defaults. A lock session asks for less in the statement it opens with (no
// extra round trip): tcp_keepalives_idle, tcp_keepalives_interval,
// tcp_keepalives_count and tcp_user_timeout, so that the server ends the
// session of a client it has not heard from for 2K + max(K, 1s), K being the
// keepalive (9s by default; 3K from K = 1s up), or up to one of its
// keepalive intervals (K/2 in whole seconds, at least 1s) more. The holder
// gives up within 2K of the last byte it received: it is told before the
// server frees the lock, with a margin of at least a second. A cut network is
// thus no overlap, and the lock is free again within seconds. With
// WithKeepalive(0) the server keeps its own settings; behind a pooler
// ([AllowPooler]) its peer is the pooler, whose own settings apply; a pinned
// connection belongs to the pool, so its session is left as the pool made it
// (set these parameters in the pool's connection string to bound it).
//
// On a failover (a standby promoted, the old primary stopped), every session
// lock held on the old primary is lost, and reported as such: advisory locks
// are never replicated. A wait on the old primary waits again (see above): on
// the new primary, when the pool's connection string leads there (several
// hosts with target_session_attrs=read-write, or a name that moves). An old
// primary left running keeps its holders' locks, and a client still connected
// to it cannot tell: fencing it is the failover's job.
// Fencing tokens (WithFencing) keep increasing across a failover only with
// synchronous replication: a fenced Lock returns once its statement has
// committed, which then waits for the standby, and the sequence's WAL runs
// ahead of the values handed out. With asynchronous replication a lagging
// standby may hand out a token again.
//
// Unlock is bounded by its context: a release that cannot complete closes
// the connection, ending the session and its locks, and returns the error.
// WithLock releases on a context of its own, bounded to 10s, so that a
// cancelled caller still lets the lock go cleanly.
//
// # Fencing tokens
//
// The window above cannot be closed from the client: a holder that pauses
// (a stop-the-world pause, a suspended machine) or whose network goes silent
// may go on for a while after another holder started. Whatever it then
// writes elsewhere, a fencing token can refuse. With [WithFencing] every
// acquisition carries a token ([Lock.Token]; also in WithLock's context
// through [LockFromContext], in the hook data, and on the otel and slog
// packages' spans and records): a number drawn, in the lock statement itself
// and after the grant, from one sequence, so that a holder granted a lock
// after another always has the larger token, across processes, sessions and
// scopes, at no extra round trip. The holder sends its token with each write;
// the resource keeps the newest token it has accepted and refuses older ones
// (package [github.com/advisorylock/advisorylock/fence] is such a resource in
// a PostgreSQL database; its documentation says how a service of your own
// checks a token).
//
// The tokens come from the sequence advisorylock_fencing ([FencingSequence])
// in the schema public ([DefaultFencingSchema]), or in the schema
// [WithFencingSchema] names: a bigint sequence with CACHE 1 (a cache would
// hand each session a range of its own, out of order) and NO CYCLE. The
// first fenced acquisition of a process checks it, and creates it if it is
// missing: one round trip more, once; two processes starting together create
// it once (the creation takes a transaction-level advisory lock, on the
// bigint key 7017853328103404661, first). The role needs USAGE on the schema
// and USAGE (or UPDATE) on the sequence; to create it, CREATE on the schema,
// which PostgreSQL 15 and later grant only to the schema's owner in public.
// A role that lacks one gets an error matching [ErrPrivilege], a
// [*PrivilegeError] naming the role, the privilege and the object, before any
// lock call; a sequence that caches or cycles is refused. A DBA can create
// the sequence ahead of time (here for the role app):
//
//	CREATE SEQUENCE IF NOT EXISTS public.advisorylock_fencing AS bigint CACHE 1 NO CYCLE;
//	GRANT USAGE ON SCHEMA public TO app;
//	GRANT USAGE ON SEQUENCE public.advisorylock_fencing TO app;
//
// Every Mutex that shares a lock must use the same sequence: tokens of two
// sequences (two schemas, two databases) are not ordered. Never drop or reset
// the sequence: it would be created again, and hand out tokens from 1, below
// those resources have already accepted (they would refuse every write until
// the new tokens caught up). To move it, create the new one with START WITH
// above the old one's last value. A privilege revoked while in use fails
// the acquisitions under way (on a lock session, the session is closed,
// since the statement failed after a grant it may hold) and the next one
// reports it as above.
//
// # Hooks
//
// [WithHooks] adds observers in the style of pgx's tracers: a [Hook] sees
// each acquisition (AcquireStart, AcquireEnd); one that also implements
// [HoldHook] sees each hold, [LostHook] each loss, and [RetryHook] each wait
// started again; [MultiHook] fans out.
// Hooks run synchronously on the lock path and must be safe for concurrent
// use. With no hooks set, the lock path calls none and pays nothing for them.
// A hook that panics does not leave a lock held: the lock is released (its
// connection closed) and the panic continues to the caller of Lock, TryLock,
// WithLock, Unlock or Rollback. When a Start method panics, no End method is
// called for that operation. A panic in LockLost or HoldEnd called from the
// goroutine that watches a held lock has no caller to go to and ends the
// program, as any panic in a goroutine does; the lock is released by then.
// Package [github.com/advisorylock/advisorylock/otel] emits OpenTelemetry
// spans and metrics through hooks.
//
// # Holders
//
// [Mutex.Holders] lists who holds and who awaits a lock, as the server sees
// it (pg_locks joined with pg_stat_activity): process id, application name,
// user, client address, mode, and since when.
//
// # Errors
//
// Every error is an [*Error]: the operation the caller called, the lock, and
// the cause, after one "advisorylock: " prefix. Match causes with
// [errors.Is]: the sentinels [ErrLocked], [ErrNotHeld], [ErrLockLost],
// [ErrStandby], [ErrPooler], [ErrTxManaged], [ErrLockTable], [ErrPrivilege]
// (a fencing sequence the role may not use or create), and
// [ErrInvalidArgument] for bad
// input, which is reported before any round trip; a timeout matches
// [context.DeadlineExceeded], a cancellation [context.Canceled]. The driver's
// error stays reachable with [errors.As].
//
// # The command
//
// The withlock command (cmd/withlock) runs a command under a lock, as
// flock(1) does for files: withlock <lock-name> [--db URL] -- <command>.
package advisorylock
