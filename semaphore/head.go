package semaphore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/interrupt"
)

// The server's queue. A waiter takes a pooled connection and waits on it, in
// pg_advisory_lock, for the queue key: the server grants it in the order the
// waiters asked. The holder of the queue key is the head of the queue, the
// only waiter that takes slots. Its session listens on the semaphore's
// channel, where every release of a slot is announced (pg_notify, by the
// releasing process, once the slot is free), and it looks at the slots when it
// starts listening and then once per recheck interval: a slot freed by a
// session that died, which no process announces, is found that way. Once it
// has a slot it gives the queue key up, and the next waiter heads the queue.
//
// The session that heads the queue has idle_session_timeout set to the lease
// (three recheck intervals), set in the statement that waits, so that it is
// in force from the grant on: the head's looks keep it alive, and a head
// whose process stops, or whose network goes silent, is ended by the server
// after the lease, which frees the queue for the next waiter.

const (
	// cleanupTimeout bounds giving the queue up, and the statements of the
	// head's own, which do not wait.
	cleanupTimeout = 5 * time.Second
	// closeTimeout bounds the goodbye to a connection being closed.
	closeTimeout = time.Second
)

// sqlstateLockNotAvailable: lock_timeout fired.
const sqlstateLockNotAvailable = "55P03"

// errHeadLost is the cause when the head's session ended under it: the
// waiter queues again.
var errHeadLost = errors.New("the session heading the queue ended")

// head is a waiter's turn in the server's queue, on a pooled connection of
// its own. Only the goroutine that made it uses it.
type head struct {
	s    *Semaphore
	conn *pgxpool.Conn
	// old is the session's idle_session_timeout before the wait set it;
	// "" when no statement of the head's succeeded yet (a failed wait takes
	// its setting along).
	old  string
	last time.Time // when the head last ran a statement: its lease runs from then
}

// takeQueue waits in the server for the queue key, until it is granted, ctx
// is done or dl (if not zero) passes; then it starts listening and looks at
// the slots. On success it returns the head and what the look found; on
// failure the connection holds nothing and is released.
func (s *Semaphore) takeQueue(ctx context.Context, dl time.Time) (*head, view, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, view{}, fmt.Errorf("acquiring a connection: %w", err)
	}
	pg := conn.Conn().PgConn()
	if pg.ParameterStatus("in_hot_standby") == "on" {
		conn.Release()
		return nil, view{}, advisorylock.ErrStandby
	}
	s.spare(ctx)
	h := &head{s: s, conn: conn}
	var bound time.Duration
	if !dl.IsZero() {
		if bound = time.Until(dl); bound <= 0 {
			conn.Release()
			return nil, view{}, context.DeadlineExceeded
		}
		if bound > maxLockTimeout {
			bound = 0 // the client alone enforces it
		}
	}
	var rows [][][]byte
	// The client's own bound is dl, also past lock_timeout's range.
	var clientBound time.Duration
	if !dl.IsZero() {
		clientBound = max(time.Until(dl), 1)
	}
	qctx := context.WithoutCancel(ctx)
	err, interrupted := interrupt.Run(ctx, clientBound, interrupt.DeadlineGrace, pg.CancelRequest,
		func() { _ = pg.Conn().Close() }, func() error {
			results, err := pg.Exec(qctx, s.sql.wait(pg.PID(), leaseFactor*s.cfg.recheck, bound)).ReadAll()
			if err == nil && len(results) == 1 {
				rows = results[0].Rows
			}
			return err
		})
	var pgErr *pgconn.PgError
	switch {
	case interrupted != nil:
		h.leave()
		return nil, view{}, joinCause(interrupted, err)
	case errors.As(err, &pgErr) && pgErr.Code == sqlstateLockNotAvailable:
		h.leave()
		return nil, view{}, joinCause(context.DeadlineExceeded, err)
	case err != nil:
		h.leave()
		return nil, view{}, err
	case len(rows) == 0:
		// The backend is not the connection's own: nothing was locked.
		conn.Release()
		return nil, view{}, advisorylock.ErrPooler
	}
	h.old = string(rows[0][0])
	v, err := h.look(ctx, s.sql.listen)
	if err != nil {
		h.leave()
		return nil, view{}, err
	}
	return h, v, nil
}

// look runs sql, which ends with the look at the slots, and returns what it
// found. A failure because the session ended is errHeadLost.
func (h *head) look(ctx context.Context, sql string) (view, error) {
	pg := h.conn.Conn().PgConn()
	results, err := pg.Exec(ctx, sql).ReadAll()
	h.last = time.Now()
	if err != nil {
		if pg.IsClosed() && ctx.Err() == nil {
			return view{}, fmt.Errorf("%w: %w", errHeadLost, err)
		}
		return view{}, err
	}
	last := results[len(results)-1]
	if len(last.Rows) != 1 || len(last.Rows[0]) != 1 {
		return view{}, errors.New("unexpected answer to the look at the slots")
	}
	return parseLook(string(last.Rows[0][0]), h.s.base, h.s.n)
}

// serve heads the queue until it has a slot. It takes a free one if there
// is one; otherwise it waits in the server on the slot whose holder most
// likely took it first (a slot's Mutex's Lock, on a connection of its own), and
// meanwhile for the announcement of another slot's release, which it then
// takes, or, at each recheck interval, looks again. It fails with ctx's
// error, context.DeadlineExceeded once dl (if not zero) passes, a slot's
// error, or errHeadLost when its session ends.
func (h *head) serve(ctx context.Context, a *acquisition, dl time.Time, v view) (l *advisorylock.Lock, err error) {
	s := h.s
	conn := h.conn.Conn()
	var w *slotWait // the wait in the server on the slot predicted to be freed first
	defer func() {
		if w != nil {
			w.abandon(l)
		}
	}()
	free := v.free
	for {
		for _, i := range free {
			l, err := s.trySlot(ctx, a, i)
			if err == nil {
				return h.settle(a, l, w), nil
			}
			if !errors.Is(err, advisorylock.ErrLocked) {
				return nil, err
			}
		}
		free = nil
		if w != nil {
			select {
			case <-w.done:
				if p := w.panicked; p != nil {
					// A hook panicked in the wait's goroutine: the slot's Mutex
					// released the slot; the panic goes on to the caller.
					w = nil
					panic(p)
				}
				if w.err == nil {
					return h.settle(a, w.l, w), nil
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				// The wait ran out its lease (see waitSlot) and starts again;
				// or it failed (its connection broke, say): announcements and
				// rechecks go on, and the next look may start another.
				if !errors.Is(w.err, context.DeadlineExceeded) {
					v.oldest = -1
				}
				w = nil
			default:
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if w == nil && v.oldest >= 0 && s.room(2) {
			w = h.waitSlot(ctx, a, dl, v.oldest)
		}
		next := h.last.Add(s.cfg.recheck)
		if !time.Now().Before(next) {
			// The recheck, due even while announcements keep coming: it also
			// keeps the session's lease.
			if v, err = h.look(ctx, s.sql.look); err != nil {
				return nil, err
			}
			free = v.free
			continue
		}
		if !dl.IsZero() && dl.Before(next) {
			next = dl
		}
		wctx, cancel := context.WithDeadline(ctx, next)
		var stop func() bool
		if w != nil {
			stop = context.AfterFunc(w.ctx, cancel) // the wait on the slot ended
		}
		n, err := conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		if stop != nil {
			stop()
		}
		cancel()
		switch {
		case err == nil:
			if i, ok := s.parseAnnouncement(n); ok && (w == nil || i != w.slot) {
				free = []int{i}
			}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case conn.PgConn().IsClosed() || !timedOut:
			return nil, fmt.Errorf("%w: %w", errHeadLost, err)
		case !dl.IsZero() && !time.Now().Before(dl):
			return nil, context.DeadlineExceeded
		}
		// Otherwise the wait on the slot ended, or the recheck is due: the
		// next turn sees to it.
	}
}

// settle returns the acquisition's slot once l was won: l, unless a slot was
// won before it by w, the wait in the server, while the head took l. Then l,
// unseen by the hooks, is released in the background, and w's slot is
// returned once w's Lock has returned it (and so has set it up to be held).
func (h *head) settle(a *acquisition, l *advisorylock.Lock, w *slotWait) *advisorylock.Lock {
	if won := a.winner(); won == l || w == nil {
		return l
	}
	go release(l)
	<-w.done
	return w.l
}

// release unlocks a slot won besides the acquisition's own, which announces
// it.
func release(l *advisorylock.Lock) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = l.Unlock(ctx)
}

// A slotWait is the head's wait in the server on one slot, through its
// Mutex's Lock, in a goroutine of its own.
type slotWait struct {
	slot   int
	ctx    context.Context // done once the wait has ended
	cancel context.CancelFunc
	done   chan struct{} // closed once the wait has ended; then l, err and panicked are set
	l      *advisorylock.Lock
	err    error
	// panicked is what a hook's panic in the Lock call was recovered with,
	// for the head to panic with in its caller's goroutine.
	panicked any
}

// waitSlot starts waiting in the server on slot i. The server grants the
// slot to the head the moment its holder releases it (or its session ends),
// with no announcement to wait for. The wait is bounded, by lock_timeout,
// to the head's lease (and to dl): a head whose process stops or whose
// network goes silent stops waiting on the slot too, in the server, and is
// not granted it afterwards; a live head starts it again.
func (h *head) waitSlot(ctx context.Context, a *acquisition, dl time.Time, i int) *slotWait {
	until := time.Now().Add(leaseFactor * h.s.cfg.recheck)
	if !dl.IsZero() && dl.Before(until) {
		until = dl
	}
	wctx, cancel := context.WithDeadline(ctx, until)
	w := &slotWait{slot: i, done: make(chan struct{})}
	var end context.CancelFunc
	w.ctx, end = context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer end()
		defer close(w.done)
		defer func() { w.panicked = recover() }()
		w.l, w.err = h.s.slots[i].Lock(&acquisitionContext{Context: wctx, a: a})
	}()
	return w
}

// abandon ends the wait once the head has returned keep (nil on failure): it
// is cancelled and, in the background, a slot it won all the same, unless
// it is keep, is released (which announces it).
func (w *slotWait) abandon(keep *advisorylock.Lock) {
	w.cancel()
	go func() {
		<-w.done
		if w.l != nil && w.l != keep {
			release(w.l)
		}
	}()
}

// parseAnnouncement returns the slot a notification announces free.
func (s *Semaphore) parseAnnouncement(n *pgconn.Notification) (int, bool) {
	if n == nil || n.Channel != s.channel {
		return 0, false
	}
	i, err := strconv.Atoi(n.Payload)
	// A process that gives the semaphore more slots announces those too.
	return i, err == nil && i >= 0 && i < s.n
}

// leave gives the queue key up if the session holds it, stops listening,
// sets idle_session_timeout back and releases the connection; when that
// fails, it closes the connection, which ends the session and whatever it
// held.
func (h *head) leave() {
	conn := h.conn.Conn()
	if conn.IsClosed() {
		h.conn.Release() // the pool destroys it
		return
	}
	sql := h.s.sql.leave
	if h.old != "" {
		r, err := restore(h.old)
		if err != nil {
			destroy(h.conn)
			return
		}
		sql = r + "; " + sql
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		destroy(h.conn)
		return
	}
	// Announcements buffered by the driver are of no use to the pool's next
	// user of the connection.
	done, stop := context.WithCancel(context.Background())
	stop()
	for {
		if _, err := conn.WaitForNotification(done); err != nil {
			break
		}
	}
	h.conn.Release()
}

// destroy closes a pooled connection and removes it from the pool, ending
// its session: the server releases every lock it held.
func destroy(conn *pgxpool.Conn) {
	c := conn.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}

// joinCause returns an error that matches both err and cause, reading
// "err: cause"; err alone when cause is nil.
func joinCause(err, cause error) error {
	if cause == nil {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}
