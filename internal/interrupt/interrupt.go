// Package interrupt ends a statement that waits in the server (a lock wait)
// when its caller's context is done or its bound passes, without closing the
// connection: by a cancel request, and only when the server does not answer
// that, by ending the session. pgx's own reaction to a done context is to
// close the connection, which would cost a reconnect per timeout; so the
// statement runs on a context that is never done, and Run watches the real
// one.
package interrupt

import (
	"context"
	"math"
	"sync"
	"time"
)

const (
	// DeadlineGrace is how long past its bound a wait may run before the
	// client steps in. The server's lock_timeout ends the wait at the bound;
	// the client cancels only when the server has not answered by then.
	DeadlineGrace = 250 * time.Millisecond
	// cancelRequestTimeout bounds the cancel request's own connection.
	cancelRequestTimeout = 2 * time.Second
	// hardStopGrace is how long a statement may outlive a delivered cancel
	// request before its session is ended: the server did not answer.
	hardStopGrace = 2 * time.Second
)

// Run runs stmt, which must not watch ctx itself, and blocks until it
// returns. When ctx is done, or when bound > 0 and bound + grace have passed
// (the statement's own lock_timeout should end it at bound), it sends the
// statement's session a cancel request (cancel, the server then fails the
// statement with SQLSTATE 57014), and calls stop, which ends the session, if
// the request fails or the statement goes on hardStopGrace after it. A bound
// includes ctx's deadline, if ctx has one: the bound's timer acts for it.
//
// It returns stmt's error and why the wait was interrupted, if it was:
// context.DeadlineExceeded for the bound, ctx's error for ctx. A cancel
// request can land after the statement it aimed at has finished; to keep it
// from hitting the session's next statement, Run returns only once any
// cancel request it sent is complete (an idle backend ignores a late one).
func Run(ctx context.Context, bound, grace time.Duration, cancel func(context.Context) error, stop func(), stmt func() error) (err, interrupted error) {
	if ctx.Done() == nil && bound <= 0 {
		return stmt(), nil
	}
	it := &interrupter{cancel: cancel, stop: stop, over: make(chan struct{})}
	var stopAfter func() bool
	if ctx.Done() != nil {
		stopAfter = context.AfterFunc(ctx, func() {
			if bound > 0 && ctx.Err() == context.DeadlineExceeded {
				return // the bound includes the deadline; its timer acts
			}
			it.interrupt(ctx.Err())
		})
	}
	var timer *time.Timer
	if bound > 0 {
		after := bound + grace
		if after < bound {
			after = math.MaxInt64 // a bound centuries away
		}
		timer = time.AfterFunc(after, func() { it.interrupt(context.DeadlineExceeded) })
	}
	err = stmt()
	if stopAfter != nil {
		stopAfter()
	}
	if timer != nil {
		timer.Stop()
	}
	return err, it.end()
}

// interrupter ends one statement's wait.
type interrupter struct {
	cancel func(context.Context) error // sends a cancel request
	stop   func()                      // ends the session under the statement, the last resort
	over   chan struct{}               // closed when the statement has returned

	mu       sync.Mutex
	finished bool          // the statement has returned; guarded by mu
	reason   error         // why the wait was interrupted, once it was; guarded by mu
	inflight chan struct{} // closed when the interruption is complete; guarded by mu
}

// interrupt cancels the running statement, once.
func (it *interrupter) interrupt(reason error) {
	it.mu.Lock()
	if it.finished || it.reason != nil {
		it.mu.Unlock()
		return
	}
	it.reason = reason
	it.inflight = make(chan struct{})
	it.mu.Unlock()
	defer close(it.inflight)

	ctx, cancel := context.WithTimeout(context.Background(), cancelRequestTimeout)
	err := it.cancel(ctx)
	cancel()
	if err != nil {
		it.stop()
		return
	}
	t := time.NewTimer(hardStopGrace)
	defer t.Stop()
	select {
	case <-it.over:
	case <-t.C:
		it.stop()
	}
}

// end records that the statement returned, waits for an interruption in
// flight, and returns its reason.
func (it *interrupter) end() error {
	it.mu.Lock()
	it.finished = true
	inflight, reason := it.inflight, it.reason
	it.mu.Unlock()
	close(it.over)
	if inflight != nil {
		<-inflight
	}
	return reason
}
