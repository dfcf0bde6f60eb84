package advisorylock

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// watchDelay is how long a session lock is held before its connection is
// watched. A lock released sooner never pays for a watcher (a goroutine, and
// waking it to release); a session that ends in this window is noticed the
// moment the watcher starts, since the closed connection reads at once.
const watchDelay = 20 * time.Millisecond

// armTick is the least time between two rounds of the armer: watchers start
// between watchDelay and watchDelay+armTick after their lock was granted.
const armTick = 5 * time.Millisecond

// errSilent is the cause of a loss noticed by the probe.
var errSilent = errors.New("the server did not answer the keepalive probe")

// watcher is the state of the goroutine that watches a held session lock's
// connection. It lives in its Lock, whose mu guards cancel and done.
type watcher struct {
	since  time.Time          // when the lock was granted; set by startWatch
	cancel context.CancelFunc // stops the watching; set once the goroutine runs
	done   chan struct{}      // closed when the goroutine has stopped
	probes atomic.Int32       // probes sent, for the tests
}

// arming queues the session locks whose watchers are still to start, in the
// order they were granted. One goroutine, the armer, runs while the queue is
// not empty and starts the watchers that are due: a lock costs an append
// here, not a timer of its own, whose arming and stopping would wake the
// runtime's network poller on every lock.
var arming struct {
	mu      sync.Mutex
	queue   []armedLock
	running bool // the armer is running
}

type armedLock struct {
	l   *Lock
	due time.Time
}

// startWatch arms the watcher of a session lock just acquired.
func (l *Lock) startWatch() {
	l.watch.since = l.acquired
	if l.watch.since.IsZero() {
		l.watch.since = time.Now()
	}
	arming.mu.Lock()
	arming.queue = append(arming.queue, armedLock{l, l.watch.since.Add(watchDelay)})
	start := !arming.running
	arming.running = true
	arming.mu.Unlock()
	if start {
		go armer()
	}
}

// armer starts the watchers that are due, in rounds at least armTick apart,
// and returns when none is left to start. A lock released before its watcher
// starts is dropped by runWatch.
func armer() {
	var due []armedLock
	for {
		arming.mu.Lock()
		q := arming.queue
		if len(q) == 0 {
			arming.running = false
			arming.mu.Unlock()
			return
		}
		now := time.Now()
		n := 0
		for n < len(q) && !q[n].due.After(now) {
			n++
		}
		due = append(due[:0], q[:n]...)
		rest := copy(q, q[n:])
		clear(q[rest:])
		arming.queue = q[:rest]
		var wait time.Duration
		if rest > 0 {
			wait = max(q[0].due.Sub(now), armTick)
		}
		arming.mu.Unlock()

		for i, a := range due {
			if a.l.held() {
				go a.l.runWatch()
			}
			due[i] = armedLock{}
		}
		if wait > 0 {
			time.Sleep(wait)
		}
	}
}

// stopWatch stops the watcher and waits until it no longer uses the
// connection, and reports true; the lock must no longer be held, so a watcher
// not started yet never will. A watcher can be in the middle of a probe that a
// silent server does not answer: when ctx ends first, stopWatch closes the
// connection's socket, which ends the probe and the session with it, and
// reports false.
func (l *Lock) stopWatch(ctx context.Context) bool {
	l.mu.Lock()
	cancel, done := l.watch.cancel, l.watch.done
	l.mu.Unlock()
	if cancel == nil {
		return true
	}
	cancel()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		_ = l.conn.Conn().PgConn().Conn().Close()
		<-done
		return false
	}
}

// runWatch is the watcher goroutine: it blocks reading the idle connection,
// which returns at once when the server ends the session, and probes it once
// per keepalive interval, which notices a network that went silent.
func (l *Lock) runWatch() {
	l.mu.Lock()
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
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
			probe = probeSQL(l.m.keys, l.watch.since)
		}
		pctx, cancel := context.WithTimeout(context.Background(), interval)
		l.watch.probes.Add(1)
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
// when a lock was granted, so the probe says it, for Holders: after the
// prefix, " classid,objid,objsubid@time" for each key the session holds.
const probePrefix = "-- advisorylock: held since"

// appendGrant appends to b what the probe says of keys granted at t.
func appendGrant(b *strings.Builder, keys []Key, t time.Time) {
	for _, k := range keys {
		classid, objid, subid := lockTag(k)
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(classid, 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(objid, 10))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(subid))
		b.WriteByte('@')
		b.WriteString(t.UTC().Format(time.RFC3339Nano))
	}
}

// probeSQL returns the probe of a pinned connection's lock, granted at since.
func probeSQL(keys []Key, since time.Time) string {
	var b strings.Builder
	b.WriteString(probePrefix)
	appendGrant(&b, keys, since)
	return b.String()
}
