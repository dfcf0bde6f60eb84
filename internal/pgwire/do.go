package pgwire

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
)

// Result is the server's answer to one query.
type Result struct {
	// Rows holds the rows of every statement in the query, in text format,
	// copied from the connection's buffers: the caller may keep them. A nil
	// value is an SQL NULL; an empty string is a non-nil empty slice.
	Rows [][][]byte

	// Tag is the command tag of the last statement completed, such as
	// "SELECT 1"; it is "" for an empty or comment-only query.
	Tag string

	// Err is the error that ended the query in the server, such as 55P03
	// (lock_timeout), 57014 (cancelled) or 53200 (out of shared memory); nil
	// if it succeeded. The session is still usable after it. Rows and Tag
	// hold what the statements before the failing one returned.
	Err *pgconn.PgError
}

// Do sends sql as one query and blocks until its answer arrives or ctx is
// done. It returns the server's answer, whose Err field reports a failed
// statement; its own error is for the session and the context only.
//
// If ctx is already done, Do sends nothing and returns an error wrapping
// ctx.Err() (not ctx.Err() itself, which means a query sent and left). If ctx is
// done before the answer, Do returns ctx.Err() at once and the answer, when
// it comes, is dropped; the query is not cancelled (see Cancel). Use DoOr to
// receive that answer. If the session has ended, or ends before the answer,
// Do returns an error matching ErrClosed; it returns ErrInvalidQuery for a
// query that cannot be sent.
//
// Do may write to the socket itself, and read its answer itself (see the
// package documentation); the write is bounded by Options.Keepalive, not by
// ctx, and the read by both.
func (s *Session) Do(ctx context.Context, sql string) (Result, error) {
	return s.DoOr(ctx, sql, nil)
}

// DoOr is Do that, when ctx is done after sql was sent but before its answer
// arrived, hands the answer to late instead of dropping it. When DoOr
// returns ctx.Err() for that reason, late is called exactly once, with the
// answer or with an error matching ErrClosed if the session ends first;
// otherwise it is never called. late runs on the goroutine that reads the
// answer (see the package documentation): it must not block and must not
// call Close, but it may call Send, to undo what a query its caller gave up
// on did (unlock a lock granted too late).
func (s *Session) DoOr(ctx context.Context, sql string, late func(Result, error)) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, notSent(err)
	}
	r := newRequest()
	r.late = late
	r.reads = true
	if err := s.send(r, sql); err != nil {
		putRequest(r)
		return Result{}, err
	}
	return s.await(ctx, r)
}

// Wait is Do for a statement the server may rightly take long to answer,
// such as a lock wait without lock_timeout: while it is the oldest query
// pending, the keepalive neither probes nor ends the session for the
// server's silence. Send nothing else on the session meanwhile; use Cancel
// to end the statement early. Like Do, it reads its answer itself if nobody
// else reads, so that a grant reaches the caller with no hand-off.
func (s *Session) Wait(ctx context.Context, sql string) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, notSent(err)
	}
	r := newRequest()
	r.patient = true
	r.reads = true
	if err := s.send(r, sql); err != nil {
		putRequest(r)
		return Result{}, err
	}
	return s.await(ctx, r)
}

// A Stmt is a statement prepared on each session that runs it, once, with
// its first use (its Parse travels with that query, costing no round trip),
// and then bound to its arguments and executed by name: the server parses and
// plans it once per session. Name must be unique to SQL among the statements
// sent on a session.
type Stmt struct {
	Name string
	SQL  string
}

// DoStmt is DoOr for the prepared statement st bound to args, each in text
// format (nil is NULL).
func (s *Session) DoStmt(ctx context.Context, st *Stmt, late func(Result, error), args ...[]byte) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, notSent(err)
	}
	c, err := s.Start(st, "", late, args...)
	if err != nil {
		return Result{}, err
	}
	return c.Await(ctx)
}

// A Call is a query sent by Start, whose answer is awaited with Await.
type Call struct {
	s *Session
	r *request
}

// Start sends the prepared statement st bound to args, or sql when st is
// nil, and returns without waiting for the answer, so that its caller can
// record that the query is on its way before waiting for the answer with
// Await, which must then be called exactly once. late is DoOr's. Start's
// errors are Send's: nothing is sent and late is never called.
func (s *Session) Start(st *Stmt, sql string, late func(Result, error), args ...[]byte) (Call, error) {
	r := newRequest()
	r.late = late
	r.reads = true
	if err := s.sendStmt(r, st, sql, args); err != nil {
		putRequest(r)
		return Call{}, err
	}
	return Call{s, r}, nil
}

// Await blocks until the answer to c's query arrives, reading it itself if
// nobody else reads, or until ctx is done. It returns as DoOr does: the
// answer, an error matching ErrClosed, or ctx.Err() itself, in which case
// late receives the answer. A ctx done already gives the answer to late
// unless it is already in.
func (c Call) Await(ctx context.Context) (Result, error) { return c.s.await(ctx, c.r) }

// SendStmt is Send for the prepared statement st bound to args.
func (s *Session) SendStmt(st *Stmt, done func(Result, error), args ...[]byte) error {
	r := newRequest()
	r.done = done
	if done == nil {
		r.done = func(Result, error) {}
	}
	if err := s.sendStmt(r, st, "", args); err != nil {
		putRequest(r)
		return err
	}
	return nil
}

// Send sends sql as one query without waiting for its answer, which is
// passed to done. It returns an error, having sent nothing and without
// calling done, if the session has ended (matching ErrClosed) or the query
// cannot be sent (ErrInvalidQuery). Otherwise done is called exactly once,
// with the answer or with an error matching ErrClosed if the session ends
// first. done runs on the goroutine that reads the answer, in the order the
// queries were sent: it must not block and must not call Close, but it may
// call Send. A nil done drops the answer.
//
// Send may write to the socket itself (see the package documentation); that
// write is bounded by Options.Keepalive.
func (s *Session) Send(sql string, done func(Result, error)) error {
	r := newRequest()
	r.done = done
	if done == nil {
		r.done = func(Result, error) {}
	}
	if err := s.send(r, sql); err != nil {
		putRequest(r)
		return err
	}
	return nil
}

// States of a request sent by Do.
const (
	stateWaiting   int32 = iota // Do waits for the answer
	stateAnswered               // the reader has handed the answer over
	stateAbandoned              // Do's caller gave up; the answer goes to late
)

// request is one query from the time it is queued until its answer has been
// handed over. The reader goroutine owns it from then on, except a waiting
// Do's, which it hands back through ready; requests are recycled.
type request struct {
	// Set before the request is queued.
	probe   bool                // a keepalive probe: its answer is dropped
	reads   bool                // its caller reads the answer itself if nobody else reads
	reader  bool                // set when queued: its caller took the read role
	patient bool                // Wait's: while oldest, the keepalive leaves it be
	parsed  string              // the statement this query's Parse prepares, if any
	seq     uint64              // its number in the order of queries, set when queued
	done    func(Result, error) // Send's callback; nil for Do and probes
	late    func(Result, error) // DoOr's handler for an abandoned answer, or nil

	res Result // built up by the reader from the answer's messages
	err error  // set by the reader before it signals ready

	state atomic.Int32  // for Do: stateWaiting, stateAnswered or stateAbandoned
	ready chan struct{} // for Do: buffered; the reader sends once, if answered while waiting
}

var requests = sync.Pool{New: func() any { return &request{ready: make(chan struct{}, 1)} }}

// newRequest returns a request ready for use, in stateWaiting.
func newRequest() *request { return requests.Get().(*request) }

// putRequest recycles r, which nobody may use afterwards.
func putRequest(r *request) {
	ready := r.ready
	*r = request{ready: ready} // also resets state to stateWaiting
	requests.Put(r)
}

// notSent is the error of a query not sent because its context was done:
// it matches the context's error without being it, so that a caller can tell
// it from an answer left behind (whose late handler will run).
func notSent(err error) error { return fmt.Errorf("pgwire: not sent: %w", err) }

// await waits for the answer to r, sent, or for ctx. When ctx ends first, the
// reader owns r from then on and hands the answer to r.late, if any.
func (r *request) await(ctx context.Context) (Result, error) {
	if ctx.Err() != nil && r.state.CompareAndSwap(stateWaiting, stateAbandoned) {
		// Given up before the answer was in.
		return Result{}, ctx.Err()
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
		if r.state.CompareAndSwap(stateWaiting, stateAbandoned) {
			// From here the reader owns r.
			return Result{}, ctx.Err()
		}
		// The answer is being handed over: take it rather than lose it.
		<-r.ready
	}
	res, err := r.res, r.err
	putRequest(r)
	return res, err
}

// complete hands the answer in r.res, or err, to whoever waits for it. For
// the reader goroutine, which must not touch r afterwards.
func (r *request) complete(err error) {
	switch {
	case r.probe:
		putRequest(r)
	case r.done != nil:
		done, res := r.done, r.res
		putRequest(r)
		done(res, err)
	default:
		r.err = err
		if r.state.CompareAndSwap(stateWaiting, stateAnswered) {
			r.ready <- struct{}{}
			return
		}
		late, res := r.late, r.res
		putRequest(r)
		if late != nil {
			late(res, err)
		}
	}
}
