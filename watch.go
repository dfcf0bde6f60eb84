package advisorylock

import (
	"context"
	"errors"
	"time"
)

// watchDelay is how long a session lock is held before its connection is
// watched. A lock released sooner never pays for a watcher (a goroutine, and
// waking it to release); a session that ends in this window is noticed the
// moment the watcher starts, since the closed connection reads at once.
const watchDelay = 20 * time.Millisecond

// errSilent is the cause of a loss noticed by the probe.
var errSilent = errors.New("the server did not answer the keepalive probe")

// watcher is the goroutine that watches a held session lock's connection.
type watcher struct {
	since  time.Time // when the lock was granted
	timer  *time.Timer
	cancel context.CancelFunc // stops the watching, set once it runs
	done   chan struct{}      // closed when the goroutine has stopped
}

// startWatch arms the watcher of a session lock just acquired.
func (l *Lock) startWatch() {
	w := &watcher{since: l.acquired}
	if w.since.IsZero() {
		w.since = time.Now()
	}
	l.watch = w
	w.timer = time.AfterFunc(watchDelay, l.runWatch)
}

// stopWatch stops the watcher and waits until it no longer uses the
// connection. The lock must not be held any more (state releasing or later),
// so a watcher that has not started yet never will.
func (l *Lock) stopWatch() {
	w := l.watch
	if w == nil || w.timer.Stop() {
		return
	}
	l.mu.Lock()
	cancel, done := w.cancel, w.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// runWatch is the watcher goroutine: it blocks reading the idle connection,
// which returns at once when the server ends the session, and probes it once
// per keepalive interval, which notices a network that went silent.
func (l *Lock) runWatch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	l.mu.Lock()
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	l.watch.cancel, l.watch.done = cancel, done
	l.mu.Unlock()

	if err := l.monitor(ctx); err != nil {
		l.lose(err)
	}
}

// monitor returns nil when ctx is cancelled (a release takes over), or the
// reason the lock can no longer be guaranteed.
func (l *Lock) monitor(ctx context.Context) error {
	pg := l.conn.Conn().PgConn()
	interval := l.m.cfg.keepalive
	probe := ""
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if interval > 0 {
			wctx, cancel = context.WithTimeout(ctx, interval)
		}
		err := pg.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			continue // a notification for someone else: keep watching
		case !idle || pg.IsClosed():
			return err // the connection failed
		}
		// Idle for a whole interval: make sure the server is still there.
		if probe == "" {
			probe = probeSQL(l.watch.since)
		}
		pctx, cancel := context.WithTimeout(context.Background(), interval)
		err = pg.Exec(pctx, probe).Close()
		cancel()
		if err != nil {
			if pctx.Err() != nil {
				return errSilent
			}
			return err
		}
	}
}

// probePrefix starts the keepalive probe: a statement that is only a comment,
// which the server answers at once without running anything. The session's
// last statement shows in pg_stat_activity.query, and pg_locks does not say
// when a lock was granted, so the probe says it, for Holders.
const probePrefix = "-- advisorylock: held since "

// probeSQL returns the probe of a lock granted at since.
func probeSQL(since time.Time) string {
	return probePrefix + since.UTC().Format(time.RFC3339Nano)
}
