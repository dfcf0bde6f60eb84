package pgwire

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// errProtocol is the cause of a session's end when the server sent something
// this package does not expect.
var errProtocol = errors.New("pgwire: protocol violation")

// read is the session's reader goroutine. It is always blocked reading the
// socket, so a server that ends the session is noticed at once, even by an
// idle session. It builds the answer of the oldest pending query from the
// messages that arrive and completes it at ReadyForQuery. When the session
// ends it completes every pending query with the session's error and calls
// OnDead.
//
// Keepalive uses the socket's read deadline rather than a timer: it is armed
// for a keepalive interval and, when it passes, the reader looks at whether
// anything arrived meanwhile (then it re-arms) or not (then silent decides).
// So a busy session pays one wakeup per interval and nothing per message,
// and silence is noticed after between one and two intervals (plus a quarter
// of one, spent looking again).
func (s *Session) read() {
	defer close(s.exited)
	var (
		cur          *request // the oldest pending query once known
		seen, armed  uint64   // messages received; and how many when the deadline was last armed
		since        uint64   // queries queued when the deadline was last armed
		checked      bool     // the socket was looked at again after the deadline passed
		cause        error
		k            = s.keepalive
		needCurrent  = func() bool { return cur != nil || s.setCurrent(&cur) }
		protocolFail = func(msg pgproto3.BackendMessage) error {
			return fmt.Errorf("%w: %T with no query pending", errProtocol, msg)
		}
	)
	if k > 0 {
		since = s.queued()
		cause = s.conn.SetReadDeadline(time.Now().Add(k))
	}
loop:
	for cause == nil {
		msg, err := s.fe.Receive()
		if err != nil {
			if k <= 0 || !isTimeout(err) || s.dead.Load() {
				cause = err
				break
			}
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
		seen++
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if !needCurrent() {
				cause = protocolFail(msg)
				break loop
			}
			cur.res.Rows = append(cur.res.Rows, copyRow(m.Values))
		case *pgproto3.CommandComplete:
			if !needCurrent() {
				cause = protocolFail(msg)
				break loop
			}
			cur.res.Tag = commandTag(m.CommandTag)
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(m)
			if isFatal(pgErr) {
				cause = pgErr
				break loop
			}
			if !needCurrent() {
				cause = protocolFail(msg)
				break loop
			}
			cur.res.Err = pgErr
			if cur.parsed != "" {
				s.unprepare(cur.parsed)
			}
		case *pgproto3.ReadyForQuery:
			if !needCurrent() {
				cause = protocolFail(msg)
				break loop
			}
			if s.dead.Load() {
				// Once Done is closed, answers still buffered no longer
				// count: the queries fail with the session's error.
				break loop
			}
			answered := cur
			cur = s.advance()
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
			// COPY, the extended protocol's messages: never asked for.
			cause = fmt.Errorf("%w: unexpected %T", errProtocol, msg)
		}
	}
	s.fail(cause)
	pending, err := s.drain()
	for _, r := range pending {
		r.res = Result{}
		r.complete(err)
	}
	if s.onDead != nil {
		s.onDead(err)
	}
}

// setCurrent sets *cur to the oldest pending query and reports whether there
// is one.
func (s *Session) setCurrent(cur **request) bool {
	*cur = s.head()
	return *cur != nil
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
