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
// the slots. On success it returns the head and the slots the look found
// free; on failure the connection holds nothing and is released.
func (s *Semaphore) takeQueue(ctx context.Context, dl time.Time) (*head, []int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("acquiring a connection: %w", err)
	}
	pg := conn.Conn().PgConn()
	if pg.ParameterStatus("in_hot_standby") == "on" {
		conn.Release()
		return nil, nil, advisorylock.ErrStandby
	}
	s.spare(ctx)
	h := &head{s: s, conn: conn}
	var bound time.Duration
	if !dl.IsZero() {
		if bound = time.Until(dl); bound <= 0 {
			conn.Release()
			return nil, nil, context.DeadlineExceeded
		}
		if bound > maxLockTimeout {
			bound = 0 // the client alone enforces it
		}
	}
	var rows [][][]byte
	err, interrupted := interruptible(ctx, pg, dl, func(qctx context.Context) error {
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
		return nil, nil, joinCause(interrupted, err)
	case errors.As(err, &pgErr) && pgErr.Code == sqlstateLockNotAvailable:
		h.leave()
		return nil, nil, joinCause(context.DeadlineExceeded, err)
	case err != nil:
		h.leave()
		return nil, nil, err
	case len(rows) == 0:
		// The backend is not the connection's own: nothing was locked.
		conn.Release()
		return nil, nil, advisorylock.ErrPooler
	}
	h.old = string(rows[0][0])
	free, err := h.look(ctx, s.sql.listen)
	if err != nil {
		h.leave()
		return nil, nil, err
	}
	return h, free, nil
}

// look runs sql, which ends with the look at the slots, and returns the free
// ones. A failure because the session ended is errHeadLost.
func (h *head) look(ctx context.Context, sql string) ([]int, error) {
	pg := h.conn.Conn().PgConn()
	results, err := pg.Exec(ctx, sql).ReadAll()
	h.last = time.Now()
	if err != nil {
		if pg.IsClosed() && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %w", errHeadLost, err)
		}
		return nil, err
	}
	last := results[len(results)-1]
	if len(last.Rows) != 1 || len(last.Rows[0]) != 1 {
		return nil, errors.New("unexpected answer to the look at the slots")
	}
	_, free, err := parseLook(string(last.Rows[0][0]), h.s.base, h.s.n)
	return free, err
}

// serve heads the queue until it has a slot: it takes a free one, else waits
// for an announced release or, at each recheck interval, looks again. It
// fails with ctx's error, context.DeadlineExceeded once dl (if not zero)
// passes, a slot's error, or errHeadLost when its session ends.
func (h *head) serve(ctx context.Context, a *acquisition, dl time.Time, free []int) (*advisorylock.Lock, error) {
	s := h.s
	conn := h.conn.Conn()
	for {
		for _, i := range free {
			l, err := s.trySlot(ctx, a, i)
			if err == nil {
				return l, nil
			}
			if !errors.Is(err, advisorylock.ErrLocked) {
				return nil, err
			}
		}
		free = nil
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next := h.last.Add(s.cfg.recheck)
		if !time.Now().Before(next) {
			// The recheck, due even while announcements keep coming: it also
			// keeps the session's lease.
			var err error
			if free, err = h.look(ctx, s.sql.look); err != nil {
				return nil, err
			}
			continue
		}
		if !dl.IsZero() && dl.Before(next) {
			next = dl
		}
		wctx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			if i, ok := s.parseAnnouncement(n); ok {
				free = []int{i}
			}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case conn.PgConn().IsClosed() || !timedOut:
			return nil, fmt.Errorf("%w: %w", errHeadLost, err)
		case !dl.IsZero() && !time.Now().Before(dl):
			return nil, context.DeadlineExceeded
		}
		// Otherwise the recheck is due: the next turn runs it.
	}
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
