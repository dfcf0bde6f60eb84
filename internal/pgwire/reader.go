package pgwire

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// errProtocol is the cause of a session's end when the server sent something
// this package does not expect.
var errProtocol = errors.New("pgwire: protocol violation")

// errEnded stops a reader that finds the session ended by someone else.
var errEnded = errors.New("pgwire: session ended")

// aLongTimeAgo is a deadline in the past: setting it ends a read under way.
var aLongTimeAgo = time.Unix(1, 0)

// Who reads the socket: the holder of the read role, of which there is at
// most one (Session.role).
const (
	// roleFree: nobody reads. The queue and the read buffer were empty when
	// the role was last given up; the watcher waits for the socket to become
	// readable, and a caller that sends a query takes the role to read its
	// own answer.
	roleFree = iota

	// roleCaller: a caller of Do, DoOr, DoStmt, Wait or Await reads, until
	// its own answer is in (answering the queries before its own on the
	// way), its context is done or the session ends.
	roleCaller

	// roleWatcher: the watcher goroutine reads, and hands each answer to
	// whoever waits for it, until the queue is empty. A session without a
	// watchFD (TLS) is always in this state.
	roleWatcher
)

// # Reading
//
// A caller that finds nobody reading reads its answer itself: the answer
// then reaches it with no other goroutine woken on its way, which on a
// machine with idle cores is a thread wakeup (a futex call) less on every
// round trip. Meanwhile the watcher goroutine is blocked on a duplicate of
// the socket's descriptor (watchFD), waiting for bytes to arrive without
// consuming them. When they arrive and nobody reads, it takes the role
// itself: so a server that ends an idle session is noticed at once, and a
// query sent with Send, or left by a caller whose context ended, is answered.
// When a caller gives the role up with queries still pending (others'
// queries, pipelined behind its own), it hands the role to the watcher,
// which answers them in order and wakes their callers, as it does for every
// query of a TLS session, whose buffered bytes the kernel cannot see.
//
// The keepalive uses the watchFD's deadline (the socket's read deadline
// without one): armed for a keepalive interval, and when it passes the
// watcher looks at whether any message arrived meanwhile, whoever read it.
// So a busy session pays one wakeup per interval and nothing per message,
// and silence is noticed after between one and two intervals (plus a
// quarter of one, spent looking again). The socket's own read deadline is
// used only to end a caller's read when its context ends.

// handle processes msg, read by the holder of the read role. It returns a
// non-nil error to end the session.
func (s *Session) handle(msg pgproto3.BackendMessage) error {
	s.seen.Add(1)
	switch m := msg.(type) {
	case *pgproto3.DataRow:
		if !s.current() {
			return protocolFail(msg)
		}
		s.cur.res.Rows = append(s.cur.res.Rows, copyRow(m.Values))
	case *pgproto3.CommandComplete:
		if !s.current() {
			return protocolFail(msg)
		}
		s.cur.res.Tag = commandTag(m.CommandTag)
	case *pgproto3.ErrorResponse:
		pgErr := pgconn.ErrorResponseToPgError(m)
		if isFatal(pgErr) {
			return pgErr
		}
		if !s.current() {
			return protocolFail(msg)
		}
		s.cur.res.Err = pgErr
		if s.cur.parsed != "" {
			s.unprepare(s.cur.parsed)
		}
	case *pgproto3.ReadyForQuery:
		if !s.current() {
			return protocolFail(msg)
		}
		if s.dead.Load() {
			// Once Done is closed, answers still buffered no longer
			// count: the queries fail with the session's error.
			return errEnded
		}
		answered := s.cur
		s.cur = s.advance()
		answered.complete(nil)
	case *pgproto3.RowDescription, *pgproto3.EmptyQueryResponse,
		*pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.NoData:
		// Rows are read in text format and need no description; an
		// empty query's answer is an empty Result.
	case *pgproto3.ParameterStatus:
		s.setParameter(m.Name, m.Value)
	case *pgproto3.NoticeResponse, *pgproto3.NotificationResponse:
		// Warnings (unlocking a lock not held) and notifications are
		// not the caller's concern.
	default:
		return fmt.Errorf("%w: unexpected %T", errProtocol, msg)
	}
	return nil
}

// current makes sure s.cur is the oldest pending query and reports whether
// there is one.
func (s *Session) current() bool {
	if s.cur == nil {
		s.cur = s.head()
	}
	return s.cur != nil
}

func protocolFail(msg pgproto3.BackendMessage) error {
	return fmt.Errorf("%w: %T with no query pending", errProtocol, msg)
}

// await waits for the answer to r, sent: it reads it itself if it took the
// read role when r was queued, or else waits to be handed it.
func (s *Session) await(ctx context.Context, r *request) (Result, error) {
	if !r.reader {
		return r.await(ctx)
	}

	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, s.kick)
	}
	var cause error
	for r.state.Load() == stateWaiting && ctx.Err() == nil {
		msg, err := s.rd.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !s.dead.Load() {
				// A kick: this caller's context, or a late one of an
				// earlier reader's. Clear it, then look at the context,
				// which is done before its kick comes.
				if err := s.conn.SetReadDeadline(time.Time{}); err != nil {
					cause = err
					break
				}
				if ctx.Err() != nil {
					break
				}
				continue
			}
			cause = err
			break
		}
		if cause = s.handle(msg); cause != nil {
			break
		}
	}
	if stop != nil {
		stop()
	}
	if r.state.Load() == stateAnswered {
		s.own.Add(1)
	}
	if cause != nil {
		s.fail(cause)
	}
	s.release()
	// Answered: r.ready holds the answer. Otherwise (ctx done, or the
	// session ended) the watcher now reads, and r.await leaves r to it or
	// waits for the session's error.
	return r.await(ctx)
}

// kick ends a caller's read under way, for its context's end.
func (s *Session) kick() { _ = s.conn.SetReadDeadline(aLongTimeAgo) }

// release gives up a caller's read role: it is free if nothing remains to
// read, and the watcher's otherwise.
func (s *Session) release() {
	s.mu.Lock()
	if s.err == nil && s.queue.len() == 0 && s.rd.buffered() == 0 {
		s.role = roleFree
		long := s.aside > minStepAside
		s.mu.Unlock()
		if long {
			// The watcher sleeps long: let it watch the socket now.
			s.nudge()
		}
		return
	}
	s.role = roleWatcher
	s.mu.Unlock()
	s.nudge()
}

// nudge wakes the watcher to look at the role and the socket again.
func (s *Session) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if s.wfd != nil {
		_ = s.wfd.setDeadline(aLongTimeAgo)
	}
}

// watch is the session's watcher goroutine. It reads whenever it holds the
// read role, waits for the socket otherwise, runs the keepalive, and when
// the session ends it completes every pending query with the session's
// error and calls OnDead.
func (s *Session) watch() {
	defer close(s.exited)
	if s.wfd == nil {
		s.readAlways()
	} else {
		s.watchFD()
	}
	pending, err := s.drain()
	for _, r := range pending {
		r.res = Result{}
		r.complete(err)
	}
	if s.onDead != nil {
		s.onDead(err)
	}
}

// The watcher leaves the socket to a caller that reads, and looks at the
// read role again after minStepAside (unless handed the role sooner):
// waiting on the socket meanwhile would wake it, and a thread for it, with
// every answer the caller reads. So bytes that arrive after a short read
// gave the role up, with nothing pending, such as the FATAL error of a
// backend terminated at that moment, are read within minStepAside. While one
// caller keeps reading (a lock wait), the interval doubles up to
// maxStepAside, and that caller wakes the watcher when it gives the role up;
// so does a query queued for the watcher to answer (Send) while it sleeps.
const (
	minStepAside = 10 * time.Millisecond
	maxStepAside = time.Second
)

// stepAside returns how long the watcher leaves the socket to the caller
// that reads now, and records it in s.aside.
func (s *Session) stepAside() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aside == 0 || s.asideFor != s.readerSeq {
		s.aside, s.asideFor = minStepAside, s.readerSeq
	} else {
		s.aside = min(2*s.aside, maxStepAside)
	}
	return s.aside
}

// watchFD is the watcher of a session with a watchFD. It returns once the
// session has ended and no caller reads.
func (s *Session) watchFD() {
	var (
		k           = s.keepalive
		due         time.Time // when the keepalive looks next; zero without keepalive
		seen, armed uint64    // messages received; and how many when due was last set
		since       uint64    // queries queued when due was last set
		checked     bool      // the socket was looked at again after due passed
		timer       = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	if k > 0 {
		since, due = s.queued(), time.Now().Add(k)
	}
	// look is the keepalive's look, once due has passed.
	look := func() error {
		if seen = s.seen.Load(); seen == armed && !checked && !s.wfd.readable() {
			// The holder of the read role may have run late: look again,
			// briefly, before judging.
			checked = true
			due = time.Now().Add(k / 4)
			return nil
		}
		if seen == armed && !s.wfd.readable() {
			if cause := s.silent(since); cause != nil {
				return cause
			}
		}
		checked = false
		armed, since, due = seen, s.queued(), time.Now().Add(k)
		return nil
	}
	accept := func(readable func() bool) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case s.err != nil || s.role != roleFree:
			return true
		case readable():
			// Looked at with the role free, so nobody consumes the
			// bytes meanwhile: there is something to read.
			s.role = roleWatcher
			return true
		}
		return false
	}
	for {
		if k > 0 && !time.Now().Before(due) {
			if cause := look(); cause != nil {
				s.fail(cause)
			}
		}
		s.mu.Lock()
		role, ended := s.role, s.err != nil
		if role != roleCaller {
			s.aside = 0
		}
		s.mu.Unlock()
		switch {
		case ended && role == roleCaller:
			// The caller is about to find out and hand the role over.
			<-s.wake
			continue
		case ended:
			return
		case role == roleWatcher:
			if err := s.readQueued(due); err != nil && err != errLookDue {
				s.fail(err)
			}
			continue
		case role == roleCaller:
			d := s.stepAside()
			if k > 0 {
				d = min(d, time.Until(due))
			}
			timer.Reset(d)
			select {
			case <-s.wake:
				timer.Stop()
			case <-timer.C:
			}
			continue
		}
		if err := s.wfd.setDeadline(due); err != nil {
			s.fail(err)
			continue
		}
		if err := s.wfd.wait(accept); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !s.dead.Load() {
			s.fail(err)
		}
	}
}

// errLookDue stops the watcher's reading when the keepalive's look is due.
var errLookDue = errors.New("pgwire: keepalive look due")

// readQueued reads as the watcher, holding the read role: at least one
// message, then until no query is pending and nothing is buffered, when it
// gives the role up and returns nil. It returns errLookDue, still holding
// the role, once due (if not zero) has passed, so that the keepalive looks
// at a server silent while queries are pending.
func (s *Session) readQueued(due time.Time) error {
	if err := s.conn.SetReadDeadline(due); err != nil {
		return err
	}
	for {
		msg, err := s.rd.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !s.dead.Load() {
				if !due.IsZero() && !time.Now().Before(due) {
					return errLookDue
				}
				// A caller's late kick.
				if err := s.conn.SetReadDeadline(due); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if err := s.handle(msg); err != nil {
			return err
		}
		s.mu.Lock()
		if s.queue.len() == 0 && s.rd.buffered() == 0 {
			s.role = roleFree
			s.mu.Unlock()
			// The deadline stays: clearing it now could undo the kick of
			// a caller that took the role meanwhile. A caller that meets
			// it takes it for a late kick.
			return nil
		}
		s.mu.Unlock()
	}
}

// readAlways is the watcher of a session without a watchFD: it always holds
// the read role, blocked reading the socket, so a server that ends the
// session is noticed at once. It returns once the session has ended.
func (s *Session) readAlways() {
	var (
		seen, armed uint64 // messages received; and how many when the deadline was last armed
		since       uint64 // queries queued when the deadline was last armed
		checked     bool   // the socket was looked at again after the deadline passed
		cause       error
		k           = s.keepalive
	)
	if k > 0 {
		since = s.queued()
		cause = s.conn.SetReadDeadline(time.Now().Add(k))
	}
	for cause == nil {
		msg, err := s.rd.next()
		if err != nil {
			if k <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) || s.dead.Load() {
				cause = err
				break
			}
			seen = s.seen.Load()
			if seen == armed && !checked {
				// A read whose deadline has passed fails without looking
				// at the socket, so bytes may be waiting there if this
				// goroutine ran late: look again, briefly, before judging.
				checked = true
				cause = s.conn.SetReadDeadline(time.Now().Add(k / 4))
				continue
			}
			if seen == armed {
				if cause = s.silent(since); cause != nil {
					break
				}
			}
			checked = false
			armed, since = seen, s.queued()
			cause = s.conn.SetReadDeadline(time.Now().Add(k))
			continue
		}
		cause = s.handle(msg)
	}
	s.fail(cause)
}

// isFatal reports whether the server ends the session after err.
func isFatal(err *pgconn.PgError) bool {
	sev := err.SeverityUnlocalized
	if sev == "" {
		sev = err.Severity
	}
	return strings.EqualFold(sev, "FATAL") || strings.EqualFold(sev, "PANIC")
}

// copyRow copies a DataRow's values, which point into the connection's read
// buffer, into one allocation.
func copyRow(values [][]byte) [][]byte {
	n := 0
	for _, v := range values {
		n += len(v)
	}
	arena := make([]byte, n)
	row := make([][]byte, len(values))
	off := 0
	for i, v := range values {
		switch {
		case v == nil: // NULL
		case len(v) == 0:
			row[i] = []byte{}
		default:
			end := off + copy(arena[off:], v)
			row[i] = arena[off:end:end]
			off = end
		}
	}
	return row
}

// commandTag returns tag as a string, without allocating for the tags of the
// queries a lock session sends.
func commandTag(tag []byte) string {
	switch string(tag) {
	case "SELECT 0":
		return "SELECT 0"
	case "SELECT 1":
		return "SELECT 1"
	case "SET":
		return "SET"
	}
	return string(tag)
}
