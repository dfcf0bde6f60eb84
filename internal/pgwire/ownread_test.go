package pgwire_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// On a plain socket, a caller that finds nobody reading reads its own
// answer: no goroutine hands it over.
func TestDo_readsOwnAnswer(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{Keepalive: time.Second})
	if !pgwire.ReadsOwn(s) {
		t.Fatal("a session on a plain socket does not let callers read their own answers")
	}
	const n = 50
	for i := range n {
		want := fmt.Sprint(i)
		if got := do(t, s, "select "+want); len(got) != 1 || got[0] != want {
			t.Fatalf("Do(select %s) = %q", want, got)
		}
	}
	if got := pgwire.OwnReads(s); got != n {
		t.Errorf("%d of %d sequential answers read by their own caller; want all", got, n)
	}
}

// A caller that reads its own answer and gives up (its context ends) leaves
// the answer to late and the role to the watcher, and its context's end
// disturbs no other caller's read: answers stay matched to their queries.
func TestDo_cancelledReadersDisturbNoOne(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{Keepalive: time.Second})
	const rounds = 300
	var (
		wg                sync.WaitGroup
		abandoned, lates  atomic.Int64
		answered, notSent atomic.Int64
	)
	wg.Add(2)
	go func() { // answers cut short at random moments
		defer wg.Done()
		for i := range rounds {
			want := fmt.Sprint("a", i)
			ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rand.IntN(400))*time.Microsecond)
			res, err := s.DoOr(ctx, "select '"+want+"'", func(res pgwire.Result, err error) {
				if err != nil || res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != want {
					t.Errorf("late answer for %s: %v %v %v", want, values(res), err, res.Err)
				}
				lates.Add(1)
			})
			cancel()
			switch {
			case err == nil:
				if len(res.Rows) != 1 || string(res.Rows[0][0]) != want {
					t.Errorf("DoOr(%s) = %v", want, values(res))
				}
				answered.Add(1)
			case errors.Is(err, context.DeadlineExceeded) && err == context.DeadlineExceeded:
				abandoned.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				notSent.Add(1)
			default:
				t.Errorf("DoOr(%s): %v", want, err)
			}
		}
	}()
	go func() { // answers awaited to the end
		defer wg.Done()
		for i := range rounds {
			want := fmt.Sprint("b", i)
			res, err := s.Do(t.Context(), "select '"+want+"'")
			if err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != want {
				t.Errorf("Do(%s) = %v, %v", want, values(res), err)
			}
		}
	}()
	wg.Wait()
	await(t, "a late answer for every abandoned query", func() bool { return lates.Load() == abandoned.Load() })
	t.Logf("cut short: %d answered, %d abandoned, %d not sent; %d answers read by their caller",
		answered.Load(), abandoned.Load(), notSent.Load(), pgwire.OwnReads(s))
	if abandoned.Load() == 0 {
		t.Error("no query was abandoned after it was sent: the test did not test")
	}
	if got := do(t, s, "select 'after'"); got[0] != "after" {
		t.Errorf("Do after the race = %q", got)
	}
	if err := s.Err(); err != nil {
		t.Errorf("session ended: %v", err)
	}
}

// A server that ends the session just after callers read their own answers
// is noticed by the watcher, with nobody reading.
func TestSession_terminatedAfterOwnReads(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	dead := make(deaths, 2)
	s := connect(t, cfg, pgwire.Options{OnDead: dead.onDead})
	for range 3 {
		do(t, s, "select 1")
	}
	exec(t, otherConn(t, dsn), "select pg_catalog.pg_terminate_backend($1)", int64(s.PID()))
	awaitClosed(t, s)
	if err := s.Err(); !errors.Is(err, pgwire.ErrClosed) || sqlState(err) != "57P01" {
		t.Errorf("Err = %v; want ErrClosed wrapping SQLSTATE 57P01", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	dead.check(t, s.Err())
}

// slowConn returns from each write 40ms after the bytes went out, as on a
// loaded machine: longer than pgconn's 15ms slow-write mark, so pgconn
// starts its background reader with each write while connecting, and the
// server's answer arrives while that reader runs.
type slowConn struct{ net.Conn }

func (c slowConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	time.Sleep(40 * time.Millisecond)
	return n, err
}

// A session whose connection pgconn read in the background while
// connecting (a slow write starts that) gets every answer: pgconn's reader
// is stopped before the session reads.
func TestConnect_slowWriteKeepsAnswers(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowConn{c}, nil
	}
	for i := range 3 {
		s := connect(t, cfg, pgwire.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), waitBound)
		res, err := s.Do(ctx, "select 'first'")
		cancel()
		if err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "first" {
			t.Fatalf("session %d: first Do = %v, %v; want its answer", i, values(res), err)
		}
	}
}

// A lock wait's caller reads the grant itself, so that a hand-off reaches it
// with no goroutine in between; meanwhile a query sent with Send on another
// session is answered by the watcher, and the session notices its end after
// the wait.
func TestWait_readsOwnGrant(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(15,15)")
	granted := make(chan answer, 1)
	go func() {
		res, err := s.Wait(t.Context(), "select 'granted' from pg_catalog.pg_advisory_lock(15,15)")
		granted <- answer{res, err}
	}()
	awaitWaiting(t, other, s.PID())
	own := pgwire.OwnReads(s)
	exec(t, other, "select pg_catalog.pg_advisory_unlock(15,15)")
	if a := receive(t, granted); a.err != nil || a.res.Err != nil || len(a.res.Rows) != 1 {
		t.Fatalf("Wait = %v, %v, %v; want the grant", values(a.res), a.err, a.res.Err)
	}
	if got := pgwire.OwnReads(s) - own; got != 1 {
		t.Errorf("the grant was read by its caller %d times; want 1", got)
	}
	// A query the watcher answers, right after the caller read.
	sent := make(chan answer, 1)
	if err := s.Send("select 'sent'", func(res pgwire.Result, err error) { sent <- answer{res, err} }); err != nil {
		t.Fatal(err)
	}
	if a := receive(t, sent); a.err != nil || len(a.res.Rows) != 1 || string(a.res.Rows[0][0]) != "sent" {
		t.Fatalf("Send's answer: %v, %v", values(a.res), a.err)
	}
	exec(t, other, "select pg_catalog.pg_terminate_backend($1)", int64(s.PID()))
	awaitClosed(t, s)
}
