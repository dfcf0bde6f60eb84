package election

import (
	"context"
	"errors"
	"time"

	"github.com/advisorylock/advisorylock"
)

// Run campaigns, calls fn while leading, resigns when fn returns, and after
// the retry delay ([WithRetryDelay]) campaigns again, blocking until ctx is
// done (it then returns nil, or the error of confirming the last release) or
// fn fails. fn's context is cancelled when the leadership ends; fn is never
// called once ctx is done. An error from fn ends Run, after resigning, unless
// it is fn reporting its context's end; a panic resigns and goes on. Failed
// campaigns are retried, except [advisorylock.ErrPooler] and
// [advisorylock.ErrStandby], which Run returns, as it does [ErrClosed],
// [ErrCampaigning] and [advisorylock.ErrInvalidArgument]. Resignations get
// 10s, on ctx's values without its cancellation.
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
