package pgwire_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// deaths records OnDead's calls.
type deaths chan error

func (d deaths) onDead(err error) { d <- err }

// check fails t unless OnDead was called exactly once, with want.
func (d deaths) check(t *testing.T, want error) {
	t.Helper()
	select {
	case err := <-d:
		if err != want {
			t.Errorf("OnDead(%v); want OnDead(%v), Err's error", err, want)
		}
	default:
		t.Fatal("OnDead not called")
	}
	select {
	case err := <-d:
		t.Errorf("OnDead called again, with %v", err)
	default:
	}
}

// An idle session notices at once that the server ended it: Done closes, Err
// wraps the server's FATAL error, OnDead is called, later queries fail at
// once.
func TestSession_terminatedIdle(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	dead := make(deaths, 2)
	s := connect(t, cfg, pgwire.Options{OnDead: dead.onDead})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_terminate_backend($1)", int64(s.PID()))
	awaitClosed(t, s)
	err := s.Err()
	if !errors.Is(err, pgwire.ErrClosed) || sqlState(err) != "57P01" {
		t.Errorf("Err = %v; want ErrClosed wrapping SQLSTATE 57P01", err)
	}
	// Close waits for the reader, which calls OnDead before it exits.
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	dead.check(t, err)
	if _, err := s.Do(t.Context(), "select 1"); !errors.Is(err, pgwire.ErrClosed) {
		t.Errorf("Do after the end = %v; want ErrClosed", err)
	}
	if err := s.Send("select 1", func(pgwire.Result, error) { t.Error("Send's done called after Send failed") }); !errors.Is(err, pgwire.ErrClosed) {
		t.Errorf("Send after the end = %v; want ErrClosed", err)
	}
}

// Pending queries fail with ErrClosed when the server ends the session:
// Do's, Send's and an abandoned DoOr's, whose late handler gets the error.
func TestSession_terminatedPending(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(10,10)")

	doErr := make(chan error, 1)
	go func() {
		_, err := s.Do(context.Background(), "select pg_catalog.pg_advisory_lock(10,10)")
		doErr <- err
	}()
	awaitWaiting(t, other, s.PID())
	sent := make(chan answer, 1)
	if err := s.Send("select 1", func(res pgwire.Result, err error) { sent <- answer{res, err} }); err != nil {
		t.Fatal(err)
	}
	late := make(chan answer, 1)
	gaveUp, giveUp := context.WithCancel(t.Context())
	lateErr := make(chan error, 1)
	go func() {
		_, err := s.DoOr(gaveUp, "select 2", func(res pgwire.Result, err error) { late <- answer{res, err} })
		lateErr <- err
	}()
	await(t, "DoOr's query queued", func() bool { return pgwire.Pipelined(s) == 2 })
	giveUp()
	if err := <-lateErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("DoOr = %v; want context.Canceled", err)
	}

	exec(t, other, "select pg_catalog.pg_terminate_backend($1)", int64(s.PID()))
	awaitClosed(t, s)
	for what, err := range map[string]error{
		"Do":          receiveErr(t, doErr),
		"Send's done": receive(t, sent).err,
		"DoOr's late": receive(t, late).err,
	} {
		if !errors.Is(err, pgwire.ErrClosed) || sqlState(err) != "57P01" {
			t.Errorf("%s got %v; want ErrClosed wrapping SQLSTATE 57P01", what, err)
		}
	}
}

// Close is idempotent, fails the pending queries with ErrClosed and leaves
// no goroutine behind (TestMain checks).
func TestClose(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	dead := make(deaths, 2)
	s, err := pgwire.Connect(t.Context(), cfg, pgwire.Options{OnDead: dead.onDead})
	if err != nil {
		t.Fatal(err)
	}
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(11,11)")
	sent := make(chan answer, 1)
	if err := s.Send("select pg_catalog.pg_advisory_lock(11,11)", func(res pgwire.Result, err error) { sent <- answer{res, err} }); err != nil {
		t.Fatal(err)
	}
	awaitWaiting(t, other, s.PID())
	for range 2 {
		if err := s.Close(t.Context()); err != nil {
			t.Fatalf("Close = %v", err)
		}
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if err := s.Err(); err != pgwire.ErrClosed {
		t.Errorf("Err = %v after Close; want ErrClosed", err)
	}
	if a := receive(t, sent); !errors.Is(a.err, pgwire.ErrClosed) {
		t.Errorf("the pending query got %v; want ErrClosed", a.err)
	}
	dead.check(t, pgwire.ErrClosed)
	if _, err := s.Do(t.Context(), "select 1"); !errors.Is(err, pgwire.ErrClosed) {
		t.Errorf("Do after Close = %v; want ErrClosed", err)
	}
	// The server ended the session, releasing the lock it waited for.
	await(t, "the closed session gone from the server", func() bool {
		var n int
		if err := other.QueryRow(t.Context(), "select count(*) from pg_catalog.pg_stat_activity where pid = $1",
			int64(s.PID())).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}

// Do returns at once when its context ends before the answer; DoOr's late
// handler then gets the answer, here a lock granted after its caller gave
// up, and can release it.
func TestDoOr_late(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(12,12)")

	late := make(chan answer, 1)
	released := make(chan answer, 1)
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() {
		_, err := s.DoOr(ctx, "select 'granted' from pg_catalog.pg_advisory_lock(12,12)", func(res pgwire.Result, err error) {
			late <- answer{res, err}
			// Undo it from the reader goroutine, as the lock library will.
			if err == nil && res.Err == nil {
				_ = s.Send("select pg_catalog.pg_advisory_unlock(12,12)", func(res pgwire.Result, err error) {
					released <- answer{res, err}
				})
			}
		})
		result <- err
	}()
	awaitWaiting(t, other, s.PID())
	cancel()
	if err := receiveErr(t, result); !errors.Is(err, context.Canceled) {
		t.Fatalf("DoOr = %v; want context.Canceled", err)
	}
	select {
	case a := <-late:
		t.Fatalf("late called (%v, %v) before the lock was granted", a.res, a.err)
	default:
	}
	exec(t, other, "select pg_catalog.pg_advisory_unlock(12,12)")
	a := receive(t, late)
	if a.err != nil || a.res.Err != nil || !slices.EqualFunc(values(a.res), [][]string{{"granted"}}, slices.Equal) {
		t.Fatalf("late got %v %v %v; want the grant", values(a.res), a.err, a.res.Err)
	}
	if a := receive(t, released); a.err != nil || a.res.Err != nil || string(a.res.Rows[0][0]) != "t" {
		t.Fatalf("unlock from late: %v %v %v", values(a.res), a.err, a.res.Err)
	}
	if got := do(t, s, "select count(*) from pg_catalog.pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"); got[0] != "0" {
		t.Errorf("the session holds %s advisory locks; want 0", got[0])
	}
}

// An abandoned answer does not reach the next caller: answers stay matched
// to their queries.
func TestDo_abandonedKeepsOrder(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(13,13)")
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() {
		_, err := s.Do(ctx, "select 'abandoned' from pg_catalog.pg_advisory_lock(13,13), pg_catalog.pg_advisory_unlock(13,13)")
		result <- err
	}()
	awaitWaiting(t, other, s.PID())
	cancel()
	if err := receiveErr(t, result); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v; want context.Canceled", err)
	}
	exec(t, other, "select pg_catalog.pg_advisory_unlock(13,13)")
	if got := do(t, s, "select 'mine'"); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("Do after an abandoned query = %q; want [mine]", got)
	}
}

// A context done before Do sends anything: Do sends nothing and DoOr never
// calls late.
func TestDo_contextDoneFirst(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	_, err := s.DoOr(ctx, "select 1", func(pgwire.Result, error) { t.Error("late called for a query never sent") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DoOr = %v; want context.DeadlineExceeded", err)
	}
	if got := pgwire.Writes(s); got != 0 {
		t.Errorf("%d writes; want 0", got)
	}
}

// receiveErr returns the next error from ch, or fails t after waitBound.
func receiveErr(t testing.TB, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitBound):
		t.Fatalf("no result after %v", waitBound)
		return nil
	}
}

// Close returns within its context on a silent network even with a query
// pending, though the cancel request it sends for that query cannot get
// through.
func TestClose_silentNetwork(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	proxy := viaProxy(t, cfg)
	s, err := pgwire.Connect(t.Context(), cfg, pgwire.Options{})
	if err != nil {
		t.Fatal(err)
	}
	do(t, s, "select 1")
	proxy.Freeze()
	sent := make(chan answer, 1)
	if err := s.Send("select 2", func(res pgwire.Result, err error) { sent <- answer{res, err} }); err != nil {
		t.Fatal(err)
	}
	const bound = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close = %v; want nil (the reader exits at once)", err)
	}
	if took := time.Since(start); took > waitBound/2 {
		t.Errorf("Close took %v with a %v context", took, bound)
	}
	if a := receive(t, sent); !errors.Is(a.err, pgwire.ErrClosed) {
		t.Errorf("the pending query got %v; want ErrClosed", a.err)
	}
}
