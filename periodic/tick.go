package periodic

import (
	"context"
	"errors"
	"time"

	"github.com/advisorylock/advisorylock"
)

// Tick attempts a run every interval, as [Job.Run] does, until ctx is done:
// every replica calls it with the same job, and across all of them fn runs
// once per period, each run in the first attempt after the period has passed
// (so at most one interval late). Make every a fraction of the period: the
// smaller, the closer the runs keep to it, at three round trips per attempt
// (one while a run is under way elsewhere, four for a run). The first
// attempt is at once.
//
// A run that fails (fn's error, a lost lock, the database away) is left to
// the next attempt, here or anywhere: hooks ([WithHooks]) see each outcome.
// Tick blocks until ctx is done, then returns nil once the run under way, if
// any, has ended (fn's context ends with ctx) and been recorded. It returns
// early, with the error, only for what no retry can mend:
// [advisorylock.ErrInvalidArgument] (bad input, or every not positive), a
// *[PrivilegeError], a schema that does not exist, [advisorylock.ErrPooler]
// and [advisorylock.ErrStandby]. A panic in fn goes on to Tick's caller, once
// the run is recorded as failed and the lock released.
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
	t := time.NewTicker(every)
	defer t.Stop()
	for ctx.Err() == nil {
		if _, _, err := j.attempt(ctx, "tick", fn); err != nil && permanent(err) {
			return err
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return nil
}

// permanent reports an error of an attempt that a retry cannot mend.
func permanent(err error) bool {
	return errors.Is(err, advisorylock.ErrInvalidArgument) || errors.Is(err, ErrPrivilege) ||
		errors.Is(err, advisorylock.ErrPooler) || errors.Is(err, advisorylock.ErrStandby) ||
		sqlState(err) == codeInvalidSchemaName
}
