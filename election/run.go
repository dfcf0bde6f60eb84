package election

import (
	"context"
	"errors"
	"github.com/advisorylock/advisorylock"
	"time"
)

// Run is the candidate's life: it campaigns, calls fn while leading, resigns
// when fn returns, and campaigns again, until ctx is done or the Election is
// closed. It blocks for that whole time.
//
// fn's context is derived from ctx and is cancelled when the leadership ends:
// when it is lost, with a context.Cause matching ErrLockLost (another
// candidate may be leading already), or when Close resigns it. fn should then
// return promptly: Run waits for it, and never calls fn again before it has
// returned, so the candidate's own view of "I lead" is the time fn runs. The
// call of fn is thus the started-leading event and its return the
// stopped-leading one; there is no stopped-leading without a started-leading
// before it.
//
// When fn returns nil, Run resigns and, after the retry delay (WithRetryDelay),
// campaigns again: to lead as long as possible, fn blocks until its context is
// done. When fn returns an error, Run resigns and returns that error (joined
// with the resignation's error, if any), unless
// fn's context was already cancelled and the error is that cancellation
// (matching context.Canceled, context.DeadlineExceeded or ErrLockLost): that is
// fn reporting the end of its leadership, and Run goes on. When fn panics, Run
// resigns and the panic goes on. A campaign that fails (its connection died,
// the server is unreachable) is retried after the retry delay; one that cannot
// succeed where it is (ErrPooler behind a transaction pooler, ErrStandby on a
// hot standby) ends Run with that error. A lost
// leadership's release is confirmed before the next campaign (see
// Leadership.Resign).
//
// Run never calls fn once ctx is done: a leadership won as ctx ends (the
// grant and a shutdown signal crossing) is resigned without calling fn.
//
// Resignations run on a context that keeps ctx's values but not its
// cancellation, bounded to 10s. Run returns nil when ctx is done and the last
// leadership's release was confirmed, and otherwise that confirmation's error.
// It returns at once with ErrNilFunc for a nil fn, ErrCampaigning when the
// Election is already campaigning or leading (through Campaign or another
// Run), ErrClosed when the Election is (or gets) closed, and bad input
// (ErrInvalidArgument).
func (e *Election) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := e.check("run"); err != nil {
		return err
	}
	if fn == nil {
		return e.errorf("run", invalid("nil function"))
	}
	var last *Leadership // the last leadership, until its release is confirmed
	for first := true; ; first = false {
		if !first && !e.pause(ctx) {
			break
		}
		ld, err := e.win(ctx)
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, advisorylock.ErrInvalidArgument), errors.Is(err, ErrCampaigning), errors.Is(err, ErrClosed),
				errors.Is(err, advisorylock.ErrPooler), errors.Is(err, advisorylock.ErrStandby):
				return err
			default:
				continue // its connection died, the server is away: try again
			}
			break
		}
		last = ld
		if ctx.Err() != nil {
			// The grant arrived as ctx ended: fn is never called once
			// ctx is done. The leadership is given back below.
			break
		}
		e.announce()
		fnErr := e.lead(ctx, ld, fn)
		resignErr := ld.resign(ctx)
		if resignErr == nil {
			last = nil
		}
		if fnErr != nil {
			return errors.Join(fnErr, resignErr)
		}
	}
	// ctx is done: one last attempt to confirm a release left unconfirmed.
	if last != nil {
		return last.resign(ctx)
	}
	return nil
}

// pause waits the retry delay. It returns false when ctx is done first, and
// true, after the delay, when the Election was closed meanwhile (the next
// Campaign reports it).
func (e *Election) pause(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if e.cfg.retryDelay == 0 {
		return true
	}
	t := time.NewTimer(e.cfg.retryDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-e.halt.Done():
		return true
	case <-t.C:
		return true
	}
}

// lead runs fn under ld and returns fn's error, or nil when the error is fn
// reporting the cancellation of its context. It resigns ld when fn panics.
func (e *Election) lead(ctx context.Context, ld *Leadership, fn func(context.Context) error) (err error) {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ended := make(chan struct{})
	go func() {
		select {
		case <-ld.Done():
			cancel(ld.Err())
		case <-ended:
		}
	}()
	returned := false
	defer func() {
		close(ended)
		if !returned {
			_ = ld.resign(ctx) // a panic or runtime.Goexit goes on after it
		}
	}()
	err = fn(fctx)
	returned = true
	if err != nil && fctx.Err() != nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, advisorylock.ErrLockLost)) {
		return nil
	}
	return err
}

// resign is Resign on a context that keeps ctx's values but not its
// cancellation, bounded to releaseTimeout.
func (ld *Leadership) resign(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	return ld.Resign(rctx)
}
