package periodic

import (
	"context"
	"time"
)

// A Hook observes a Job's attempts, as pgx's tracers observe queries: each
// call of [Job.Run], and each attempt [Job.Tick] makes, whether it ran fn,
// skipped or failed. Hooks are called synchronously and must be safe for
// concurrent use; they observe and never change an outcome.
//
// RunStart is called before the attempt's first round trip, with the
// caller's context; the context it returns is the attempt's: fn's context is
// derived from it (so a span started there is the parent of fn's work), and
// it is passed to RunEnd. RunEnd is called exactly once per RunStart that
// returned, on every exit path, after the run's end is recorded and the lock
// released, also when fn panics (before the panic goes on).
type Hook interface {
	RunStart(ctx context.Context, j *Job, data RunStartData) context.Context
	RunEnd(ctx context.Context, j *Job, data RunEndData)
}

// RunStartData describes an attempt about to start. It has no fields yet.
type RunStartData struct{}

// RunEndData describes how an attempt ended.
type RunEndData struct {
	// Ran reports whether fn was called.
	Ran bool
	// Run is, when Ran, the run: its token, its start and, when recorded,
	// its end and failure (see [Run.Failure]).
	Run Run
	// Skipped says why fn was not called, when the attempt did not fail: an
	// error matching [advisorylock.ErrLocked] (a run is under way elsewhere)
	// or [ErrNotDue] (a *[NotDueError]). It is nil otherwise.
	Skipped error
	// FnErr is what fn returned, or an error saying it panicked.
	FnErr error
	// Err is the attempt's own failure: the database, the lock, the record
	// of the run; nil when it had none.
	Err error
	// Elapsed is the attempt's time, on this process's monotonic clock.
	Elapsed time.Duration
}

// startHooks calls the hooks' RunStart in order, and returns the context the
// last one returned.
func (j *Job) startHooks(ctx context.Context) context.Context {
	for _, h := range j.cfg.hooks {
		ctx = h.RunStart(ctx, j, RunStartData{})
	}
	return ctx
}

// endHooks calls the hooks' RunEnd in order.
func (j *Job) endHooks(ctx context.Context, data RunEndData) {
	for _, h := range j.cfg.hooks {
		h.RunEnd(ctx, j, data)
	}
}
