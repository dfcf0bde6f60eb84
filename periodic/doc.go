// Package periodic runs work at most once per period across every process
// that shares a PostgreSQL database: of ten replicas posting a statistic to a
// chat every 30 minutes, one posts, once per period, and a post that fails is
// retried by whichever replica comes next. It is built on the public API of
// package advisorylock, as package election is.
//
//	job := periodic.New(pool, "slack-stats", 30*time.Minute)
//	err := job.Tick(ctx, time.Minute, func(ctx context.Context, run periodic.Run) error {
//		return postStats(ctx, run.Token) // ctx ends if the lock is lost
//	})
//
// # Runs
//
// A [Job] is a name and a period. [Job.Run] runs a function if a run is due:
// it takes the name's advisory lock without waiting, checks that the last
// successful run began at least the period ago, records the start of this
// run, calls the function, records how it ended and releases the lock. The
// check and the record are one statement, run while the lock is held, so two
// processes never both begin a run within the period. [Job.Tick] attempts a
// run at a fixed interval until its context ends: every replica calls it, and
// the work runs in the first attempt, anywhere, after the period has passed.
// [Job.Begin] and [Claim.End] do the same under a lock the caller holds, for
// work that does not fit a function (withlock --every runs a command between
// them).
//
// A run counts only when it succeeds: its function returns nil, the lock is
// held throughout (the server is asked, by the session's process id, when the
// success is recorded) and the end is recorded. A run that returns an error,
// panics, loses its lock, outlives [WithMaxRunTime] or whose process dies
// leaves the period open: the next attempt anywhere runs again, at once or
// after [WithMinSpacing]. The work should therefore tolerate being repeated
// after a failure; its fencing token tells the attempts apart.
//
// # The server's clock
//
// Every time the package compares is the server's (now() in the statements
// that check and record a run), and every time it records too: clients whose
// clocks disagree with the server's, or with each other, by minutes or hours
// run the work exactly as if they agreed. The client's clock only measures
// durations (the interval of Tick, [WithMaxRunTime], and Tick's wait for a run
// to fall due, the difference of two of the server's readings), on its
// monotonic clock.
//
// A period is measured from the start of one successful run to the start of
// the next. Attempts that come at the period's own rate (a cron entry every
// 30 minutes with a period of 30m) land a few milliseconds before or after
// the period's end, by the jitter of the schedule and of the round trips, and
// a replica that finds it a millisecond early skips a whole period. Attempt
// more often than the period (Tick's interval a fraction of it), or make the
// period a little shorter than the schedule's (29m for a cron entry every 30
// minutes).
//
// # The fencing token
//
// Each run gets a number, [Run.Token]: 1 for a name's first run, then one
// more for each run begun, assigned by the statement that records the start.
// Runs of a name are serialised by its lock, so a later run always has a
// greater token. A run whose lock was lost keeps running until it notices
// (its context is cancelled then); a store that remembers the greatest token
// it has seen for the job and refuses writes carrying a smaller one turns
// that window into a refusal.
//
// # The runs table
//
// Runs are recorded in the table advisorylock_runs ([TableName]) of the
// schema [WithSchema] chooses (default "public"), one row per job name. A Job
// creates it on first use, when a statement finds it missing:
//
//	create table if not exists public.advisorylock_runs (
//		name                text primary key,      -- the job name
//		run                 bigint not null,       -- the last run's number: 1, 2, 3, ... (its fencing token)
//		started_at          timestamptz not null,  -- when the last run started (server clock)
//		started_by          text not null,         -- who started it (the identity)
//		finished_at         timestamptz,           -- when it ended; null while it runs, or if its process died
//		failure             text,                  -- why it failed; null if it succeeded or has not ended
//		success_run         bigint,                -- the last successful run's number
//		success_started_at  timestamptz,           -- when it started
//		success_finished_at timestamptz,           -- when it ended
//		success_by          text                   -- who ran it
//	)
//
// [TableSQL] returns this statement for any schema, for a DBA or a migration
// to run ahead of time. The first run of a process checks the table and
// creates it if it is missing: one round trip more, once. Processes starting
// together create it once: the creation takes a transaction-level advisory
// lock on the bigint key 7017853328103404661 first, as the module does for
// each object it creates (CREATE ... IF NOT EXISTS alone is not safe against
// a concurrent creation).
//
// Privileges: USAGE on the schema, and SELECT, INSERT and UPDATE on the table;
// CREATE on the schema only to create the table ([Job.Status] needs SELECT
// alone, and never creates it). PostgreSQL 15 and later grant CREATE on
// schema public to its owner only. A role that lacks one gets an error
// matching [advisorylock.ErrPrivilege], an [*advisorylock.PrivilegeError]
// naming the role, the privilege and the object, and [Job.Tick] stops on it:
//
//	advisorylock: run job "slack-stats": role "app" lacks CREATE on schema "public", needed to create table "public"."advisorylock_runs"
//
// To create the table ahead of time for a role app:
//
//	create table if not exists public.advisorylock_runs ( ... as above ... );
//	grant usage on schema public to app;
//	grant select, insert, update on public.advisorylock_runs to app;
//
// The identity recorded with each run ([WithIdentity], default "host:pid")
// says who ran it. The failure column holds a few words of the package's
// ([Run.Failure]), never the text of an error, which could carry what the
// database should not keep.
//
// # The lock
//
// The job's lock is the advisory lock of its name ([advisorylock.KeyFromName]),
// as advisorylock.New(pool, name) and withlock take it: withlock --every
// with the same name shares the job's record and its lock, and a plain Mutex
// or withlock of that name keeps its runs out while it holds the lock. The
// lock is session-scoped and held while the function runs, on one of package
// advisorylock's lock sessions (its default for session locks): a run costs no
// pooled connection while it holds the lock, and the pool serves the
// statements that check and record the run, and the function's own work. A
// pooler in transaction mode is refused ([advisorylock.ErrPooler]) unless
// [WithLockOptions] gives the lock sessions a direct connection
// ([advisorylock.WithSessionPool]).
//
// # Errors
//
// Every error is an [*advisorylock.Error] naming the call and the job:
//
//	advisorylock: begin job "slack-stats": run not due: last successful run #41 started 12m3s ago; next due in 17m57s
//
// Match causes with [errors.Is]: [ErrNotDue] (from Begin) and
// [advisorylock.ErrLocked] (from the job's Mutex, held elsewhere), which Run
// and Tick take for "not now" and do not return,
// [advisorylock.ErrPrivilege], [ErrMaxRunTime], [advisorylock.ErrLockLost],
// [advisorylock.ErrInvalidArgument] for bad input, which New accepts and every
// call then reports before any round trip, and [context.Canceled] and
// [context.DeadlineExceeded] when a context ended the call.
package periodic
