// Package advisorylockgocron runs the jobs of gocron v2 schedulers
// (github.com/go-co-op/gocron/v2) at most once per period across every
// scheduler that shares a PostgreSQL database, on package periodic: ten
// replicas of a service, each with the same scheduler, post a statistic once
// every 30 minutes between them, and a post that fails is retried at the next
// scheduled time, by whichever replica comes first.
//
// The package lives in the directory gocron of the advisorylock repository,
// as a module of its own (github.com/advisorylock/advisorylock/gocron), so
// that the library's module does not depend on gocron. Its name is
// advisorylockgocron, so that it does not clash with gocron's.
//
// # The Locker
//
// A [Locker] is gocron's distributed job locker, with a period: gocron calls
// its Lock before each run of a job, with the job's name, on every scheduler.
// Lock takes the job's advisory lock without waiting, and begins a run only
// if the last successful run of that job began at least the period ago, on
// the database server's clock, recording its start in the runs table of
// package periodic under the job's name; gocron runs the job, then releases
// the lock, and the run's end is recorded first. So each job runs once per
// period across the schedulers, whatever their clocks say and however their
// schedules are phased, where a lock released when the job ends (gocron's
// Redis locker) lets a scheduler whose timer fires a moment later run the job
// again.
//
//	locker := advisorylockgocron.NewLocker(pool, 29*time.Minute)
//	s, _ := gocron.NewScheduler(
//		gocron.WithDistributedLocker(locker),
//		gocron.WithGlobalJobOptions(gocron.WithEventListeners(locker.EventListeners()...)),
//	)
//	s.NewJob(gocron.DurationJob(30*time.Minute), gocron.NewTask(postStats), gocron.WithName("slack-stats"))
//
// Name every job (gocron.WithName): the name keys its lock and its record.
// Make the period a little shorter than the job's interval, as the schedulers'
// timers fire a few milliseconds apart.
//
// A run counts only when it succeeds. gocron does not tell a Locker how a job
// ended: the listeners [Locker.EventListeners] returns do, for a job that
// returns an error or panics (AfterJobRunsWithPanic also makes gocron recover
// the panic), and the run is then retried at the next scheduled time, here or
// on another scheduler. A job with an AfterJobRunsWithError listener of its
// own replaces the Locker's, and should call [Locker.JobFailed]. A run whose
// lock is lost while the job runs does not count either; the job's context is
// gocron's and is not cancelled then: the loss is noticed as the run ends. A
// run whose process dies does not count. The run's fencing token (see
// package periodic) is not passed to the job: gocron has no way to; use
// periodic.Job.Run where the work needs it.
//
// # The Elector
//
// An [Elector] is gocron's distributed elector: one scheduler leads, the one
// that holds the advisory lock of the elector's name (it waits for it in the
// server's queue), and only the leader runs jobs. When the leader dies or
// closes, another takes over at once, but approves no job run until the
// period has passed since the last one its predecessor approved, on the
// server's clock: the leader records each job start it approves, in the runs
// table of package periodic under the elector's name. So a failover never
// makes a job run twice within the period, whatever the new leader's timers
// say, provided each job's own interval is at least the period. A leader
// counts a run when it approves it, since gocron tells an Elector nothing of
// how it went, and records no run per job: for retries of failed runs, and
// for jobs each with a record of its own, use the Locker.
//
//	elector := advisorylockgocron.NewElector(pool, "scheduler-leader", 30*time.Minute)
//	defer elector.Close(context.Background())
//	s, _ := gocron.NewScheduler(gocron.WithDistributedElector(elector))
//
// # The runs table
//
// Both record runs in the table advisorylock_runs that package periodic
// creates on first use and documents (columns, privileges, and the SQL to
// create it ahead of time); periodic.WithSchema chooses its schema.
package advisorylockgocron
