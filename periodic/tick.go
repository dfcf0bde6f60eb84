package periodic

import (
	"context"
	"errors"
	"time"

	"github.com/advisorylock/advisorylock"
)

// Tick attempts a run every interval, as [Job.Run] does, until ctx is done:
// every replica calls it with the same job, and across all of them fn runs
// once per period. An attempt that finds the run not due, or that runs it,
// learns when the next falls due, from the server's clock, and the next
// attempt comes then if that is sooner than the interval: so a run begins
// within a round trip or so of the period's end, and at most one interval
// late when every replica's last attempt found a run under way. An attempt costs three round trips (one
// while a run is under way elsewhere, four for a run); the interval bounds
// how soon a failed run is retried and how soon a run is noticed at all. The
// first attempt is at once.
//
// A run that fails (fn's error, a lost lock, the database away) is left to
// the next attempt, here or anywhere: hooks ([WithHooks]) see each outcome.
// Tick blocks until ctx is done, then returns nil once the run under way, if
// any, has ended (fn's context ends with ctx) and been recorded. It returns
// early, with the error, only for what no retry can mend:
// [advisorylock.ErrInvalidArgument] (bad input, or every not positive), a
// missing privilege ([advisorylock.ErrPrivilege]), a schema that does not
// exist, [advisorylock.ErrPooler] and [advisorylock.ErrStandby]. A panic in fn
// goes on to Tick's caller, once the run is recorded as failed and the lock
// released.
func (j *Job) Tick(ctx context.Context, every time.Duration, fn func(ctx context.Context, run Run) error) error {
	if err := j.check("tick"); err != nil {
		return err
	}
	switch {
	case every <= 0:
		return j.errorf("tick", invalid("interval %v: not positive", every))
	case fn == nil:
		return j.errorf("tick", invalid("nil function"))
	}
	t := time.NewTimer(every)
	defer t.Stop()
	for ctx.Err() == nil {
		began := time.Now()
		end := j.attempt(ctx, "tick", fn)
		if end.Err != nil && permanent(end.Err) {
			return end.Err
		}
		// The next attempt an interval after this one began, or when the
		// next run falls due, if sooner.
		wait := every - time.Since(began)
		if due, ok := j.dueIn(end); ok {
			wait = min(wait, due+dueMargin)
		}
		t.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return nil
}

// dueIn returns how long after the attempt that ended so the next run falls
// due, from the server's readings it made: the run it skipped, or the run it
// ran. ok is false when it does not know, or nothing holds the next run back.
func (j *Job) dueIn(end RunEndData) (d time.Duration, ok bool) {
	var nd *NotDueError
	switch {
	case errors.As(end.Skipped, &nd) && !nd.Status.Due.IsZero():
		return nd.Status.Due.Sub(nd.Status.Now), true
	case end.Ran && !end.Run.FinishedAt.IsZero():
		s := Status{Last: end.Run}
		if end.Run.Failure == "" {
			s.LastSuccess = end.Run
		}
		if due := j.due(s); !due.IsZero() {
			return due.Sub(end.Run.FinishedAt), true
		}
	}
	return 0, false
}

// dueMargin is added to the wait for a run to fall due: the server compares
// in microseconds, and the wait is measured from a reading taken before the
// answer arrived, so the attempt lands a little after the period's end.
const dueMargin = time.Millisecond

// permanent reports an error of an attempt that a retry cannot mend.
func permanent(err error) bool {
	return errors.Is(err, advisorylock.ErrInvalidArgument) || errors.Is(err, advisorylock.ErrPrivilege) ||
		errors.Is(err, advisorylock.ErrPooler) || errors.Is(err, advisorylock.ErrStandby) ||
		errors.As(err, new(*schemaError))
}
