// Package election elects a leader among processes (or goroutines) sharing a
// PostgreSQL database: at most one candidate per election name leads at a
// time, and another takes over when it resigns or dies. It is built on the
// public API of package advisorylock, as etcd's concurrency.Election is on a
// Session.
//
//	e := election.New(pool, "nightly-report", election.WithIdentity("worker-7"))
//	defer e.Close(context.Background())
//	err := e.Run(ctx, func(ctx context.Context) error {
//		return schedule(ctx) // until ctx is done: the leadership ended
//	})
//
// # Leading
//
// Leading means holding a session-scoped exclusive advisory lock on the
// election name's key ([advisorylock.KeyFromName], so an [advisorylock.Mutex]
// of the same name conflicts with it). [Election.Campaign] waits for that lock
// in the server's lock queue, not by polling: a waiting candidate wins the
// moment the leader resigns or its session ends. [Election.Run] is the usual
// way to lead: it campaigns, calls a function while leading and campaigns
// again after each leadership ends. [Election.Leader] asks the server who
// leads now, and [Election.Observe] follows the changes.
//
// The call of Run's function is the started-leading event and its return the
// stopped-leading one: its context is cancelled when the leadership ends
// (lost, with a cause matching [advisorylock.ErrLockLost], or resigned by
// Close), and Run never calls it again before it has returned. Run never calls
// it once Run's own context is done: when the grant and a shutdown signal
// cross, the fresh leadership is resigned instead. Campaign does the same for
// a grant that arrives once its context is done (it resigns and returns the
// context's error), because its caller has stopped wanting to lead, and a
// leadership nobody uses would keep the other candidates waiting; etcd's
// Campaign and x/sync's semaphore give back a late acquisition the same way.
// A cancellation that comes after the check reaches the function through its
// context, like any later one.
//
// When the function returns nil, Run resigns and campaigns again after the
// retry delay: to lead as long as possible, the function blocks until its
// context is done. An error it returns ends Run, which resigns and returns
// it (joined with the resignation's error, if any), unless the function's
// context was already cancelled and the error is that cancellation (matching
// [context.Canceled], [context.DeadlineExceeded] or
// [advisorylock.ErrLockLost]): that is the function reporting the end of its
// leadership, and Run goes on.
//
// # Identities
//
// Each candidate has an identity ([WithIdentity]; default "host:pid") that the
// others read as the leader's, in a [Candidate]. It travels as the
// application_name of the Election's own database sessions, set from the
// sessions' start, so it shows in pg_stat_activity and the server's logs too,
// and never leaks onto the caller's pool. A Candidate also carries the
// server process id of the leader's session, which tells apart two
// leaderships of one identity.
//
// # The lease, and the window of two leaders
//
// A leader whose network goes silent cannot be told it lost; it must find out
// by itself, and the others must not wait for it forever. The lease
// ([WithLease], default [DefaultLease], 9s) bounds both sides. The leader
// probes its session every third of the lease and treats its leadership as
// lost when a probe goes unanswered for another third: it stops believing it
// leads within two thirds of the lease. The server ends a session that sent
// nothing for the whole lease (the session's idle_session_timeout), and its
// TCP stack gives up on a client it has not heard from for as long (for a
// lease under 3s, two thirds of it plus a second: the lock sessions'
// tcp_keepalives_* and tcp_user_timeout, see [advisorylock.WithKeepalive]),
// either of which releases the lock, and only then can another candidate win. The old leader
// thus steps down about a third of a lease before a new one can start, unless
// its process stalls for that long; a session the server ended (a crash,
// pg_terminate_backend) is noticed within moments, about when the next
// candidate is granted the lock.
//
// # Confirming a release
//
// [Leadership.Resign] unlocks (one round trip). When that fails, the
// connection is closed, which ends the session, and Resign confirms it from
// another session: if the old session, found by process id and identity,
// still holds the election lock, it is ended (pg_terminate_backend, waiting up
// to 5s for it to exit). A lost leadership's session may also outlive the loss
// (a silent network); the candidate's next Campaign confirms its release in
// the same way before waiting, so that a candidate's stale session and its new
// one never both hold the lock.
//
// # Sessions
//
// New uses the caller's pool only for its configuration. Each Election opens
// a small pool of its own, with the caller's settings, AfterConnect and
// tracer, at most three connections, and the identity as application_name:
// one connection waits for or holds the election lock (pinned while leading),
// the others run short queries (Leader, announcements, confirmations). Each
// observer also keeps one connection open for LISTEN, detached from that pool.
// With a lease, idle connections are closed before the server's
// idle_session_timeout would end them. Close releases all of them.
//
// Elections need PostgreSQL 14 or later (idle_session_timeout,
// pg_terminate_backend with a timeout), and a session per candidate that lives
// as long as its leadership: behind a pooler in transaction mode, Campaign
// fails with [advisorylock.ErrPooler] and Run returns it; on a hot standby
// they fail with [advisorylock.ErrStandby].
//
// # Errors
//
// Every error is an [*advisorylock.Error] naming the call and the election,
// also when the cause is the election lock's (a timed-out campaign is the
// election's, not its lock's), with one prefix:
//
//	advisorylock: campaign election "nightly-report": context deadline exceeded: …
//
// Match causes with [errors.Is]: [ErrClosed] and [ErrCampaigning];
// [advisorylock.ErrInvalidArgument] for bad input (an empty name, a nil pool,
// Election, Leadership or function, an invalid option), which New accepts and
// every call then reports before any round trip; [context.Canceled] and
// [context.DeadlineExceeded] when a context ended the call;
// [advisorylock.ErrPooler] and [advisorylock.ErrStandby] where elections
// cannot work; [advisorylock.ErrLockLost] and [advisorylock.ErrNotHeld] from
// [Leadership.Err].
package election
