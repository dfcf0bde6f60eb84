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
// The watcher runs the keepalive (keepaliveClock) on the watchFD's deadline,
// on its step aside's timer, or on the socket's read deadline while it reads
// (always, without a watchFD). A caller's read has no deadline of its own:
// a past one ends it when its context ends (kick).

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
		s.watchSocket()
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

// watchSocket is the watcher of a session with a watchFD. It returns once
// the session has ended and no caller reads.
func (s *Session) watchSocket() {
	var (
		k     = s.keepalive
		clock = s.newKeepaliveClock()
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
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
		if k > 0 && !time.Now().Before(clock.due) {
			if cause := clock.look(s, s.wfd.readable); cause != nil {
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
			if err := s.readQueued(clock.due); err != nil && err != errLookDue {
				s.fail(err)
			}
			continue
		case role == roleCaller:
			d := s.stepAside()
			if k > 0 {
				d = min(d, time.Until(clock.due))
			}
			timer.Reset(d)
			select {
			case <-s.wake:
				timer.Stop()
			case <-timer.C:
			}
			continue
		}
		if err := s.wfd.setDeadline(clock.due); err != nil {
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
// session is noticed at once. The keepalive uses the socket's read deadline.
// It returns once the session has ended.
func (s *Session) readAlways() {
	clock := s.newKeepaliveClock()
	cause := s.conn.SetReadDeadline(clock.due)
	for cause == nil {
		msg, err := s.rd.next()
		if err != nil {
			if clock.k <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) || s.dead.Load() {
				cause = err
				break
			}
			// A read whose deadline has passed fails without looking at
			// the socket, and unread bytes cannot be seen from here: the
			// clock looks again, briefly, before judging.
			if cause = clock.look(s, unseen); cause == nil {
				cause = s.conn.SetReadDeadline(clock.due)
			}
			continue
		}
		cause = s.handle(msg)
	}
	s.fail(cause)
}

// A keepaliveClock is the keepalive's schedule and what it saw (see
// Options.Keepalive): once due has passed it looks at whether a message
// arrived since its last full interval began, whoever read it. If one did,
// the next interval begins; if none did, it looks again a quarter of an
// interval later, since the reader may have run late, and then asks silent,
// which probes an idle session or judges a silent one. So a busy session
// pays one wakeup per interval and nothing per message, and silence is
// noticed after between one and two intervals (plus the quarter).
type keepaliveClock struct {
	k       time.Duration
	due     time.Time // when it looks next; zero without keepalive
	armed   uint64    // messages received when the interval began
	since   uint64    // queries queued when the interval began
	checked bool      // due is the quarter interval of the second look
}

func (s *Session) newKeepaliveClock() keepaliveClock {
	c := keepaliveClock{k: s.keepalive}
	if c.k > 0 {
		c.since, c.due = s.queued(), time.Now().Add(c.k)
	}
	return c
}

// look is the keepalive's look, once due has passed; readable reports
// whether bytes wait on the socket, unread. It returns the cause to end the
// session, or nil with due set to the next look.
func (c *keepaliveClock) look(s *Session, readable func() bool) error {
	seen := s.seen.Load()
	if seen == c.armed && !c.checked && !readable() {
		c.checked = true
		c.due = time.Now().Add(c.k / 4)
		return nil
	}
	if seen == c.armed && !readable() {
		if cause := s.silent(c.since); cause != nil {
			return cause
		}
	}
	c.checked = false
	c.armed, c.since, c.due = seen, s.queued(), time.Now().Add(c.k)
	return nil
}

// unseen is the readable of a socket whose unread bytes cannot be seen.
func unseen() bool { return false }

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
