package semaphore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// deadlineGrace is how long past its bound the wait for the queue key may
	// run before the client steps in: the server's lock_timeout ends it at
	// the bound.
	deadlineGrace = 250 * time.Millisecond
	// cancelRequestTimeout bounds the cancel request's own connection.
	cancelRequestTimeout = 2 * time.Second
	// hardStopGrace is how long the wait may outlive a delivered cancel
	// request before its connection is closed: the server did not answer.
	hardStopGrace = 2 * time.Second
)

// interruptible runs stmt, which waits in the server on pg's session, until
// it returns. A wait is ended, without closing the connection, by a cancel
// request (SQLSTATE 57014) when ctx is cancelled, or when dl (if not zero) is
// deadlineGrace past, which the statement's own lock_timeout should have
// ended first. The connection is closed only when the server does not answer
// the cancel. pgx would close the connection on a done context, costing a
// reconnect per cancelled waiter: stmt runs on a context that is never done.
//
// It returns stmt's error and why the wait was interrupted, if it was:
// ctx's error, or context.DeadlineExceeded for dl. It returns only once any
// cancel request it sent is complete, so that a late one cannot hit the
// session's next statement.
func interruptible(ctx context.Context, pg *pgconn.PgConn, dl time.Time, stmt func(context.Context) error) (err, interrupted error) {
	it := &interrupter{pg: pg, over: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() {
		if !dl.IsZero() && ctx.Err() == context.DeadlineExceeded {
			return // ctx's deadline is dl, or later: the timer acts
		}
		it.interrupt(ctx.Err())
	})
	var timer *time.Timer
	if !dl.IsZero() {
		timer = time.AfterFunc(time.Until(dl)+deadlineGrace, func() { it.interrupt(context.DeadlineExceeded) })
	}
	err = stmt(context.WithoutCancel(ctx))
	stop()
	if timer != nil {
		timer.Stop()
	}
	return err, it.end()
}

// interrupter ends one statement's wait.
type interrupter struct {
	pg   *pgconn.PgConn
	over chan struct{} // closed when the statement has returned

	mu       sync.Mutex
	finished bool
	reason   error         // why the wait was interrupted, once it was
	inflight chan struct{} // closed when the interruption is complete
}

// interrupt cancels the running statement, once: a cancel request, then,
// if the statement goes on, the connection's end.
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
	err := it.pg.CancelRequest(ctx)
	cancel()
	if err == nil {
		t := time.NewTimer(hardStopGrace)
		defer t.Stop()
		select {
		case <-it.over:
			return
		case <-t.C:
		}
	}
	_ = it.pg.Conn().Close() // the read under the statement fails at once
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
