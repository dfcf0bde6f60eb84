package pgwire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// terminateTimeout bounds Close's write of the Terminate message when its
	// context has no earlier deadline. Five bytes only wait for a socket
	// whose send buffer is full, that is for a server gone silent.
	terminateTimeout = time.Second

	// closeCancelTimeout bounds the cancel request Close sends for a
	// statement still running, when Close's context has no earlier deadline.
	closeCancelTimeout = 5 * time.Second

	// maxKeptBuffer is the largest write buffer kept for reuse; a larger one,
	// grown for a large query, is left to the garbage collector.
	maxKeptBuffer = 64 << 10
)

// Session is one PostgreSQL server session speaking the simple query
// protocol, shared by many goroutines: each query is written as soon as it is
// issued, without waiting for the answers to earlier ones, and the holder of
// the read role (a caller, or the watcher goroutine) hands the answers back
// in order. See the package documentation.
//
// A Session is created by Connect and must be ended with Close. Its methods
// are safe for concurrent use.
type Session struct {
	// Set by Connect, then read-only.
	conn      net.Conn
	raddr     net.Addr   // conn's peer, for Cancel
	rd        *msgReader // used by the holder of the read role only
	wfd       *watchFD   // the socket's duplicate the watcher waits on; nil for TLS
	cfg       *pgconn.Config
	tlsConfig *tls.Config // the connection's, nil without TLS; for Cancel
	pid       uint32
	secretKey []byte
	keepalive time.Duration
	probe     func() string
	onDead    func(error)

	params atomic.Pointer[map[string]string] // replaced whole, by the reader only
	probes atomic.Int64                      // keepalive probes sent
	own    atomic.Int64                      // answers read by their own caller, for tests
	dead   atomic.Bool                       // err != nil, readable without mu
	seen   atomic.Uint64                     // messages received, for the keepalive
	wake   chan struct{}                     // buffered: nudges the watcher (see release)
	done   chan struct{}                     // closed once err is set
	exited chan struct{}                     // closed when the watcher goroutine returns

	cur *request // the query whose answer is being read; the read role's holder's

	mu        sync.Mutex
	err       error           // why the session ended; nil while it lives; guarded by mu
	queue     queue           // queries written or being written, not yet answered, in wire order; guarded by mu
	sent      uint64          // queries queued so far, numbering them (request.seq); guarded by mu
	out       []byte          // encoded queries not yet handed to the socket; guarded by mu
	flushing  bool            // a goroutine is writing to the socket (the flusher); guarded by mu
	writeBy   time.Time       // the socket's write deadline; the flusher's
	spare     []byte          // the flusher's buffer, swapped with out; guarded by mu
	stats     counters        // guarded by mu
	prepared  map[string]bool // statements parsed, or being parsed, on the session, by name; guarded by mu
	role      int             // who reads: roleFree, roleCaller or roleWatcher; guarded by mu
	readerSeq uint64          // the seq of the query whose caller took the role last; guarded by mu
	aside     time.Duration   // how long the watcher sleeps, stepped aside; 0 if it does not; guarded by mu
	asideFor  uint64          // the readerSeq aside was chosen for; guarded by mu
}

// counters are figures for tests.
type counters struct {
	pipelined int64 // queries queued while earlier ones were unanswered
	writes    int64 // writes to the socket
}

// Close ends the session: it sends Terminate unless a write is under way,
// closes the connection, and waits for the watcher goroutine to exit, which
// first completes every pending query with ErrClosed and calls
// Options.OnDead. If queries were pending, it also sends a cancel request
// (see Cancel), bounded by ctx and five seconds, because a statement waiting
// in the server, such as a lock wait, does not notice a closed connection:
// it would keep its place in the lock's queue, and could even be granted the
// lock, until it ends.
//
// It returns nil, or ctx.Err() if ctx is done before the reader has exited
// (the connection is closed regardless). It is idempotent. It must not be
// called from a callback the session runs (Send's done, DoOr's late,
// OnDead), which would make it wait for itself.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	pending := false
	if s.err == nil {
		s.endLocked(ErrClosed)
		pending = s.queue.len() > 0
		if !s.flushing {
			// Courtesy to the server, which then ends the session without
			// logging an unexpected EOF. Nothing else writes now: the
			// session has ended and no flusher is running.
			deadline := time.Now().Add(terminateTimeout)
			if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
				deadline = d
			}
			if s.conn.SetWriteDeadline(deadline) == nil {
				term, _ := (&pgproto3.Terminate{}).Encode(nil)
				_, _ = s.conn.Write(term)
			}
		}
	}
	s.mu.Unlock()
	s.closeConn()
	if pending {
		// Best effort: on failure the statement ends on its own, later.
		cctx, cancel := context.WithTimeout(ctx, closeCancelTimeout)
		_ = s.Cancel(cctx)
		cancel()
	}
	select {
	case <-s.exited:
		return nil
	case <-ctx.Done():
		select {
		case <-s.exited: // both ready: the reader did exit
			return nil
		default:
			return ctx.Err()
		}
	}
}

// endLocked records err as the end of the session. s.mu must be held and
// s.err nil.
func (s *Session) endLocked(err error) {
	s.err = err
	s.dead.Store(true)
	close(s.done)
}

// fail ends the session with cause, unless it has already ended, and closes
// the connection. The reader goroutine then completes the pending queries.
func (s *Session) fail(cause error) {
	s.mu.Lock()
	switch {
	case s.err != nil:
	case cause == nil:
		s.endLocked(ErrClosed)
	default:
		s.endLocked(fmt.Errorf("%w: %w", ErrClosed, cause))
	}
	s.mu.Unlock()
	s.closeConn()
}

// closeConn closes the connection, and the watcher's duplicate of it.
func (s *Session) closeConn() {
	_ = s.conn.Close()
	if s.wfd != nil {
		s.wfd.close()
	}
}

// send queues r and writes sql to the server as a Query message. It returns
// the session's error, having queued nothing, if the session has ended, and
// ErrInvalidQuery for a query that cannot be sent. It writes to the socket
// itself unless another goroutine is writing, which then writes sql too; so
// under concurrency queries share writes, and only the writing goroutine
// waits for the socket. The queue's order is the order on the wire.
func (s *Session) send(r *request, sql string) error {
	return s.sendStmt(r, nil, sql, nil)
}

// sendStmt is send for a prepared statement when st is not nil: sql is then
// ignored, and the statement, parsed on the session with its first use (in
// the same write), is bound to args and executed. A statement's error ends
// that request only (Sync follows each).
func (s *Session) sendStmt(r *request, st *Stmt, sql string, args [][]byte) error {
	if st != nil {
		sql = st.SQL
	}
	if strings.IndexByte(sql, 0) >= 0 {
		return fmt.Errorf("%w: it contains a NUL byte", ErrInvalidQuery)
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	out, err := s.encode(r, st, sql, args)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	s.out = out
	if s.queue.len() > 0 {
		s.stats.pipelined++
	}
	s.sent++
	r.seq = s.sent
	s.queue.push(r)
	switch {
	case r.reads && s.role == roleFree:
		// Nobody reads: the caller will read its answer itself (see
		// Session.await). Taken here, with the query queued, the role
		// cannot go to the watcher for the answer meanwhile.
		s.role = roleCaller
		r.reader = true
		s.readerSeq = r.seq
	case !r.reads && s.role == roleFree && s.aside > 0:
		// The watcher, which answers this query, sleeps stepped aside.
		defer s.nudge()
	}
	if s.flushing {
		s.mu.Unlock()
		return nil
	}
	s.flushing = true
	s.flush()
	return nil
}

// flush writes out until it is empty, releasing s.mu during each write so
// that others can queue more meanwhile. It is called with s.mu held and
// s.flushing set, and returns with s.mu released and s.flushing clear. A
// failed write ends the session; the reader then fails the queries.
func (s *Session) flush() {
	for len(s.out) > 0 {
		buf := s.out
		s.out, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		err := s.write(buf)
		s.mu.Lock()
		s.stats.writes++
		if cap(buf) <= maxKeptBuffer {
			s.spare = buf[:0]
		}
		if err != nil {
			s.flushing = false
			s.mu.Unlock()
			s.fail(err)
			return
		}
	}
	s.flushing = false
	s.mu.Unlock()
}

// write writes buf to the socket, bounded by the keepalive interval if there
// is one: the write deadline lies between three quarters of an interval and
// one ahead, renewed only when less than three quarters remain, so that most
// writes change no timer (a timer change can wake the runtime's network
// poller, a thread wakeup on the query's path). For the flusher.
func (s *Session) write(buf []byte) error {
	if k := s.keepalive; k > 0 {
		now := time.Now()
		if s.writeBy.Sub(now) < k*3/4 {
			s.writeBy = now.Add(k)
			if err := s.conn.SetWriteDeadline(s.writeBy); err != nil {
				return err
			}
		}
	}
	_, err := s.conn.Write(buf)
	if err != nil && s.keepalive > 0 && isTimeout(err) {
		return fmt.Errorf("%w: a write made no progress for up to %v: %w", ErrSilent, s.keepalive, err)
	}
	return err
}

// encode appends the messages of a query to s.out and returns the result;
// mu is held.
func (s *Session) encode(r *request, st *Stmt, sql string, args [][]byte) ([]byte, error) {
	if st == nil {
		return (&pgproto3.Query{String: sql}).Encode(s.out)
	}
	out := s.out
	var err error
	parse := !s.prepared[st.Name]
	if parse {
		if out, err = (&pgproto3.Parse{Name: st.Name, Query: st.SQL}).Encode(out); err != nil {
			return s.out, err
		}
	}
	if out, err = (&pgproto3.Bind{PreparedStatement: st.Name, Parameters: args}).Encode(out); err != nil {
		return s.out, err
	}
	if out, err = (&pgproto3.Execute{}).Encode(out); err != nil {
		return s.out, err
	}
	if out, err = (&pgproto3.Sync{}).Encode(out); err != nil {
		return s.out, err
	}
	if parse {
		if s.prepared == nil {
			s.prepared = make(map[string]bool)
		}
		s.prepared[st.Name] = true
		r.parsed = st.Name
	}
	return out, nil
}

// unprepare forgets a statement whose Parse failed, so that its next use
// parses it again. For the reader.
func (s *Session) unprepare(name string) {
	s.mu.Lock()
	delete(s.prepared, name)
	s.mu.Unlock()
}

// head returns the oldest pending query, or nil if there is none. For the
// reader.
func (s *Session) head() *request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.peek()
}

// advance removes the oldest pending query, which has been answered, and
// returns the next one, or nil. For the reader.
func (s *Session) advance() *request {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue.pop()
	return s.queue.peek()
}

// drain empties the queue of a session that has ended and returns its
// queries with the session's error. For the reader, once the session has
// ended: nothing is queued after that.
func (s *Session) drain() ([]*request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.takeAll(), s.err
}

// queued returns how many queries have been queued so far. For the reader,
// when it arms the read deadline.
func (s *Session) queued() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// silent is called by the reader when nothing has arrived for a keepalive
// interval, the one that began when queued() returned since. With nothing
// pending it sends a probe. With the oldest pending query (a probe or not)
// sent before the interval began, it returns the cause to end the session; a
// query sent during the interval gets another one.
func (s *Session) silent(since uint64) error {
	s.mu.Lock()
	head := s.queue.peek()
	var seq uint64
	if head != nil {
		seq = head.seq
	}
	s.mu.Unlock()
	switch {
	case head != nil && head.patient:
		return nil // a lock wait: the server may rightly say nothing for long
	case head != nil && seq <= since:
		return fmt.Errorf("%w: nothing arrived for %v while awaiting an answer", ErrSilent, s.keepalive)
	case head != nil:
		return nil
	}
	sql := defaultProbe
	if s.probe != nil {
		sql = s.probe()
	}
	r := newRequest()
	r.probe = true
	err := s.send(r, sql)
	if errors.Is(err, ErrInvalidQuery) {
		err = s.send(r, defaultProbe)
	}
	if err != nil {
		// The session has ended; the reader learns it from the socket.
		putRequest(r)
		return nil
	}
	s.probes.Add(1)
	return nil
}

// setParameter records a ParameterStatus message. For the reader, the only
// writer of s.params.
func (s *Session) setParameter(name, value string) {
	old := *s.params.Load()
	if v, ok := old[name]; ok && v == value {
		return
	}
	m := maps.Clone(old)
	m[name] = value
	s.params.Store(&m)
}

// isTimeout reports whether err is a read or write deadline passing (not
// the kernel's ETIMEDOUT, which ends the connection).
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
