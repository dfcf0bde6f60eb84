package periodic_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

func TestBegin_underCallersLock(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "manual", time.Hour)
	l, err := job.Mutex().Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := job.Begin(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	if c.Run().Token != 1 || c.Previous().Last.Token != 0 {
		t.Errorf("claim run %+v, previous %+v; want token 1 and no previous run", c.Run(), c.Previous())
	}
	if s := mustStatus(t, job); !s.Held || s.Last.Token != 1 || !s.Last.FinishedAt.IsZero() {
		t.Errorf("status during the run = %+v; want held, run #1 unfinished", s)
	}
	if err := c.End(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.End(t.Context(), nil); !errors.Is(err, advisorylock.ErrInvalidArgument) {
		t.Errorf("second End = %v; want ErrInvalidArgument", err)
	}
	// Still under the same lock: the next is not due.
	_, err = job.Begin(t.Context(), l)
	var nd *periodic.NotDueError
	if !errors.As(err, &nd) || nd.Status.LastSuccess.Token != 1 {
		t.Errorf("Begin again = %v; want a NotDueError after run #1", err)
	}
	if !strings.HasPrefix(err.Error(), `advisorylock: begin job "manual": run not due: last successful run #1 started `) ||
		strings.Count(err.Error(), "advisorylock:") != 1 {
		t.Errorf("error text %q; want one prefix, the call, the job and the last run", err)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := job.Begin(t.Context(), l); !errors.Is(err, advisorylock.ErrNotHeld) {
		t.Errorf("Begin under a released lock = %v; want ErrNotHeld", err)
	}
}

// TestEnd_supersededRun checks the fencing in the record itself: a run whose
// lock went, and after which another run began, can no longer record
// anything, let alone a success.
func TestEnd_supersededRun(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "fenced", time.Hour)
	l, err := job.Mutex().Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := job.Begin(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(t.Context()); err != nil { // too early
		t.Fatal(err)
	}
	second := mustRun(t, job)
	if second.Token != 2 {
		t.Fatalf("second run token %d; want 2", second.Token)
	}
	if err := c.End(t.Context(), nil); !errors.Is(err, advisorylock.ErrLockLost) ||
		!strings.Contains(err.Error(), "a later run has begun") {
		t.Errorf("End of the superseded run = %v; want ErrLockLost, a later run has begun", err)
	}
	if s := mustStatus(t, job); s.LastSuccess.Token != 2 || s.Last.Token != 2 {
		t.Errorf("status = %+v; want run #2 the last and the last success", s)
	}
}

// TestClaim_lostBeforeHolderKnows ends the lock's session while its holder's
// network is silent: the holder cannot know, but the server does, and neither
// Begin nor End records a run for a lock its holder no longer has.
func TestClaim_lostBeforeHolderKnows(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	dsn := testDB(t)
	pool := newPool(t, dsn)
	proxy, proxied := srv.ProxiedPool(t, dsn)
	job := periodic.New(pool, "silent", time.Hour)
	// The same lock, on a connection through the proxy, unwatched.
	m := advisorylock.New(proxied, "silent", advisorylock.WithKeepalive(0))

	isolate := func(l *advisorylock.Lock) {
		t.Helper()
		proxy.Freeze()
		pgtest.TerminateHolder(t, pool)
		pgtest.AwaitHolders(t, pool, 0)
		if l.Err() != nil {
			t.Fatalf("the holder heard of the loss through a frozen network: %v", l.Err())
		}
	}
	reconnect := func(l *advisorylock.Lock) {
		t.Helper()
		proxy.Thaw()
		proxy.CutAll()
		if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
			t.Errorf("Unlock = %v; want ErrLockLost", err)
		}
	}

	// Lost before the run begins.
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	isolate(l)
	if _, err := job.Begin(t.Context(), l); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Begin = %v; want ErrLockLost", err)
	}
	reconnect(l)
	if s := mustStatus(t, job); s.Last.Token != 0 {
		t.Errorf("status = %+v; want no run begun", s)
	}

	// Lost while it runs: the success is refused.
	l, err = m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := job.Begin(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	isolate(l)
	if err := c.End(t.Context(), nil); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("End = %v; want ErrLockLost", err)
	}
	if got := c.Run(); got.Failure != "lock lost" || got.FinishedAt.IsZero() {
		t.Errorf("run = %+v; want ended, \"lock lost\"", got)
	}
	reconnect(l)
	if s := mustStatus(t, job); s.Last.Failure != "lock lost" || s.LastSuccess.Token != 0 {
		t.Errorf("status = %+v; want run #1 \"lock lost\" and no success", s)
	}
	mustRun(t, job)
}

func TestBegin_otherLocks(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "mine", time.Hour)
	for _, m := range []*advisorylock.Mutex{
		advisorylock.New(pool, "theirs"),
		advisorylock.New(pool, "mine", advisorylock.Shared()),
		advisorylock.NewWithKey(pool, advisorylock.Int64Key(1)),
	} {
		l, err := m.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := job.Begin(t.Context(), l); !errors.Is(err, advisorylock.ErrInvalidArgument) {
			t.Errorf("Begin under %v = %v; want ErrInvalidArgument", m, err)
		}
		if err := l.Unlock(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := job.Begin(t.Context(), nil); !errors.Is(err, advisorylock.ErrInvalidArgument) {
		t.Errorf("Begin(nil) = %v; want ErrInvalidArgument", err)
	}
	var c *periodic.Claim
	if err := c.End(context.Background(), nil); !errors.Is(err, advisorylock.ErrInvalidArgument) {
		t.Errorf("nil Claim's End = %v; want ErrInvalidArgument", err)
	}
}
