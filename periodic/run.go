package periodic

import (
	"context"
	"errors"
	"time"

	"github.com/advisorylock/advisorylock"
)

// recordTimeout bounds the record of a run's end and the release of its lock,
// which Run does on a context of its own so that a cancelled caller still
// leaves a clean record.
const recordTimeout = 10 * time.Second

// errPanicked stands, for hooks, for the error of a function that panicked
// or called runtime.Goexit.
var errPanicked = errors.New("advisorylock: the run's function panicked or exited")

// Run runs fn if a run is due, at most once per period across every process:
// it takes the job's lock without waiting ([advisorylock.Mutex.TryLock]),
// begins a run ([Job.Begin]), calls fn, records how it ended ([Claim.End])
// and releases the lock. It blocks for fn and four round trips. ran reports
// whether fn was called.
//
// When another process runs the job now, or the last successful run started
// less than the period ago, Run returns false and nil without calling fn.
// fn gets the run (its fencing token, [Run.Token]) and a context that is
// cancelled when the lock is lost (with a cause matching
// [advisorylock.ErrLockLost]), when [WithMaxRunTime] runs out (cause
// [ErrMaxRunTime]) or when ctx ends. The run counts (a run of the next period
// is not due before the period has passed since it began) only when fn
// returns nil, the lock was held throughout and the end was recorded. A
// failed run is retried at the next attempt, here or anywhere else.
//
// The error is fn's, joined with the failures of the run itself: a lost lock
// ([advisorylock.ErrLockLost]), [ErrMaxRunTime], the database's errors (ctx's
// when ctx ended them), [advisorylock.ErrPrivilege], [advisorylock.ErrPooler],
// [advisorylock.ErrStandby], or [advisorylock.ErrInvalidArgument] for bad
// input. The end is recorded and the lock released on a context of their own,
// bounded to 10s, also when fn panics: the panic then goes on to Run's caller.
func (j *Job) Run(ctx context.Context, fn func(ctx context.Context, run Run) error) (ran bool, err error) {
	end := j.attempt(ctx, "run", fn)
	return end.Ran, errors.Join(end.FnErr, end.Err)
}

// attempt is Run, telling all: whether fn ran, why not, fn's error apart from
// the attempt's own failure, as the hooks, called around it, are told.
func (j *Job) attempt(ctx context.Context, op string, fn func(ctx context.Context, run Run) error) (end RunEndData) {
	if err := j.check(op); err != nil {
		end.Err = err
		return end
	}
	if fn == nil {
		end.Err = j.errorf(op, invalid("nil function"))
		return end
	}
	if len(j.cfg.hooks) > 0 {
		start := j.cfg.now()
		ctx = j.startHooks(ctx)
		defer func() {
			end.Elapsed = j.cfg.now().Sub(start)
			j.endHooks(ctx, end)
		}()
	}

	l, err := j.m.TryLock(ctx)
	switch {
	case errors.Is(err, advisorylock.ErrLocked):
		end.Skipped = err
		return end
	case err != nil:
		end.Err = j.errorf(op, err)
		return end
	}
	lost := false // the loss is reported already: the release's is not news
	defer func() {
		rctx, cancel := recordContext(ctx)
		defer cancel()
		if uerr := l.Unlock(rctx); uerr != nil && !(lost && errors.Is(uerr, advisorylock.ErrLockLost)) {
			end.Err = errors.Join(end.Err, j.errorf(op, uerr))
		}
	}()

	c, err := j.Begin(ctx, l)
	switch {
	case errors.Is(err, ErrNotDue):
		end.Skipped = err
		return end
	case err != nil:
		lost = errors.Is(err, advisorylock.ErrLockLost)
		end.Err = relabel(op, err)
		return end
	}
	end.Ran, end.Run = true, c.Run()

	normal := false
	defer func() {
		if normal {
			return
		}
		// fn panicked or called runtime.Goexit: the run failed. Record it
		// under the lock (released by the deferred call above), then let
		// the panic go on.
		r := recover()
		failure := Failure(failAborted)
		if r != nil {
			failure = failPanic
		}
		rctx, cancel := recordContext(ctx)
		defer cancel()
		end.Err = relabel(op, c.End(rctx, failure))
		end.FnErr, end.Run = errPanicked, c.Run()
		if r != nil {
			panic(r)
		}
	}()
	fnErr, failure, runErr := j.call(ctx, l, c.Run(), fn)
	normal = true

	rctx, cancel := recordContext(ctx)
	defer cancel()
	endErr := c.End(rctx, failure)
	lost = errors.Is(runErr, advisorylock.ErrLockLost) || errors.Is(endErr, advisorylock.ErrLockLost)
	end.Run, end.FnErr = c.Run(), fnErr
	if runErr != nil {
		runErr = j.errorf(op, runErr)
	}
	end.Err = errors.Join(runErr, relabel(op, endErr))
	return end
}

// call calls fn with a context that ends when the lock is lost or the
// maximum run time runs out, and returns fn's error, what to record as the
// run's failure (nil: a success), and the run's own failure: the loss, or
// ErrMaxRunTime.
func (j *Job) call(ctx context.Context, l *advisorylock.Lock, run Run, fn func(ctx context.Context, run Run) error) (fnErr, failure, runErr error) {
	lctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-l.Done():
			cancel(l.Err())
		case <-lctx.Done():
		}
	}()
	defer func() {
		cancel(nil)
		<-watched // no goroutine outlives the call
	}()
	fctx := lctx
	if j.cfg.maxRunTime > 0 {
		var cancelTimeout context.CancelFunc
		fctx, cancelTimeout = context.WithTimeoutCause(lctx, j.cfg.maxRunTime, ErrMaxRunTime)
		defer cancelTimeout()
	}

	fnErr = fn(fctx, run)

	switch lerr := l.Err(); {
	case lerr != nil:
		return fnErr, lerr, lerr
	case errors.Is(context.Cause(fctx), ErrMaxRunTime):
		return fnErr, ErrMaxRunTime, ErrMaxRunTime
	}
	return fnErr, fnErr, nil
}

// recordContext returns the context for recording a run's end and releasing
// its lock: ctx's values, without its cancellation, bounded to 10s.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// relabel reports an error of Begin or End as one of op: the caller called
// Run or Tick.
func relabel(op string, err error) error {
	if lerr, ok := err.(*advisorylock.Error); ok && lerr.Op != op && lerr.Op != "" {
		return &advisorylock.Error{Op: op, Lock: lerr.Lock, Err: lerr.Err}
	}
	return err
}
