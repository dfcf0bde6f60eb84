package advisorylock

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// deadlineGrace is how long past its bound a wait may run before the
	// client steps in. The server's lock_timeout ends the wait at the bound;
	// the client cancels only when the server has not answered by then.
	deadlineGrace = 250 * time.Millisecond
	// cancelRequestTimeout bounds the cancel request's own connection.
	cancelRequestTimeout = 2 * time.Second
	// hardStopGrace is how long a statement may outlive a delivered cancel
	// request before its connection is closed: the server did not answer.
	hardStopGrace = 2 * time.Second
)

// interrupter ends a wait in the server when the caller's context is done,
// without closing the connection. pgx's default reaction to a done context is
// to close the connection, which would cost a reconnect per timeout; instead
// the statement runs on a context that is never done (so pgx does not watch
// it either), and the interrupter sends a cancel request (the server then
// fails the statement with SQLSTATE 57014). Only when the server does not
// answer is the connection closed.
type interrupter struct {
	cancel func(context.Context) error // sends a cancel request
	stop   func()                      // closes the connection under the statement, the last resort
	over   chan struct{}               // closed when the statement has returned

	mu       sync.Mutex
	finished bool
	reason   error         // why the wait was interrupted, once it was
	inflight chan struct{} // closed when the cancel request is done
}

// runInterruptible runs stmt, bounded by ctx and, when bound > 0, by bound
// (which the statement also enforces in the server; the client steps in grace
// later). It returns stmt's error
// and why the wait was interrupted, if it was: context.DeadlineExceeded for the
// bound, ctx's error for ctx.
//
// A cancel request can land after the statement it aimed at has finished; to
// keep it from hitting the connection's next statement, runInterruptible
// returns only once any cancel request it sent is complete. An idle backend
// ignores a late cancel.
func runInterruptible(ctx context.Context, pg *pgconn.PgConn, bound, grace time.Duration, stmt func(context.Context) error) (err, interrupted error) {
	qctx := context.WithoutCancel(ctx)
	return interruptible(ctx, bound, grace, pg.CancelRequest, func() { _ = pg.Conn().Close() },
		func() error { return stmt(qctx) })
}

// interruptible is runInterruptible for a statement of any session: cancel
// sends the session a cancel request, stop ends the session, the last
// resort.
func interruptible(ctx context.Context, bound, grace time.Duration, cancel func(context.Context) error, stop func(), stmt func() error) (err, interrupted error) {
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

// stop closes the connection under the statement, the last resort: its read
// fails at once, and pgx marks the connection closed.
// end records that the statement returned, waits for a cancel request in
// flight, and returns the interruption's reason.
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
