package election

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Observe reports who leads on the returned channel: the leader at the time
// of the call, then each change; the zero [Candidate] means nobody. It does
// not block, and needs no campaign. Changes arrive within moments when
// leaders of this package announce them, or at the latest after a poll
// interval ([WithPollInterval]). It reports states, not events: a lagging
// receiver sees the current state next, and a short leadership can be missed.
// The channel is closed, and its goroutine has ended, once ctx is done or the
// Election is closed. Observe fails only with [ErrClosed] or
// [advisorylock.ErrInvalidArgument]; while the server cannot be asked,
// nothing is sent.
func (e *Election) Observe(ctx context.Context) (<-chan Candidate, error) {
	if err := e.check("observe"); err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, e.errorf("observe", ErrClosed)
	}
	e.background.Add(1)
	e.mu.Unlock()
	out := make(chan Candidate)
	go e.observe(ctx, out)
	return out, nil
}

// observe is the observer goroutine.
func (e *Election) observe(ctx context.Context, out chan<- Candidate) {
	defer e.background.Done()
	defer close(out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.halt, cancel)()
	o := &observer{e: e}
	defer o.close()

	var last Candidate
	known := false
	for {
		o.listen(ctx)
		c, _, err := e.leader(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil && (!known || c != last) {
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
			known, last = true, c
			// The receiver may have taken its time: look again at once
			// rather than after a poll interval.
			continue
		}
		if !o.wait(ctx) {
			return
		}
	}
}

// observer holds an observer's LISTEN connection.
type observer struct {
	e    *Election
	conn *pgx.Conn // nil while there is none
}

// listen opens the LISTEN connection if there is none. On failure it leaves
// none: the observer polls meanwhile and tries again at the next turn.
func (o *observer) listen(ctx context.Context) {
	if o.conn != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	pc, err := o.e.pool.Acquire(ctx)
	if err != nil {
		return
	}
	// Detached from the pool, the connection neither counts against its
	// size nor goes back to it with LISTEN state.
	c := pc.Hijack()
	sql := "listen " + pgx.Identifier{o.e.channel}.Sanitize()
	if o.e.cfg.lease > 0 {
		// The lease's idle_session_timeout would end this idle session.
		sql = "set idle_session_timeout = 0; " + sql
	}
	if _, err := c.Exec(ctx, sql); err != nil {
		closeConn(c)
		return
	}
	o.conn = c
}

// wait waits for an announcement or the poll interval, whichever comes
// first. It returns false when ctx is done.
func (o *observer) wait(ctx context.Context) bool {
	d := o.e.cfg.pollInterval
	if o.conn == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	_, err := o.conn.WaitForNotification(wctx)
	timedOut := wctx.Err() != nil
	cancel()
	if ctx.Err() != nil {
		return false
	}
	// A timeout leaves the connection usable; any other error broke it.
	if err != nil && (!timedOut || o.conn.IsClosed()) {
		o.close()
	}
	return true
}

func (o *observer) close() {
	if o.conn != nil {
		closeConn(o.conn)
		o.conn = nil
	}
}

// closeConn closes a connection of the Election's, bounded by closeTimeout.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}
