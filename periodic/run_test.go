package periodic_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

func TestRun_oncePerPeriod(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	rec := &recorder{}
	job := periodic.New(pool, "report", time.Hour, periodic.WithIdentity("replica-1"), periodic.WithHooks(rec))

	first := mustRun(t, job)
	if first.Token != 1 || first.By != "replica-1" || first.StartedAt.IsZero() {
		t.Errorf("first run = %+v; want token 1 by replica-1, with a start", first)
	}
	if d := rec.last(t); !d.Ran || d.Run.Token != 1 || d.Run.FinishedAt.IsZero() || d.Run.Failure != "" || d.Err != nil {
		t.Errorf("hook after the first run: %+v; want ran, token 1, finished, no failure", d)
	}

	// A second replica, the same replica again: within the hour, no run.
	other := periodic.New(newPool(t, dsn), "report", time.Hour, periodic.WithIdentity("replica-2"), periodic.WithHooks(rec))
	mustSkip(t, other)
	mustSkip(t, job)
	d := rec.last(t)
	if !errors.Is(d.Skipped, periodic.ErrNotDue) || d.Ran || d.Err != nil {
		t.Errorf("hook after a skip: %+v; want Skipped matching ErrNotDue", d)
	}
	var nd *periodic.NotDueError
	if !errors.As(d.Skipped, &nd) || nd.Status.LastSuccess.Token != 1 ||
		!nd.Status.Due.Equal(first.StartedAt.Add(time.Hour)) {
		t.Errorf("skip reason %v; want a NotDueError with run #1 and due an hour after its start (%v)", d.Skipped, first.StartedAt)
	}

	s := mustStatus(t, other)
	if s.Last.Token != 1 || s.LastSuccess.Token != 1 || s.LastSuccess.By != "replica-1" ||
		!s.LastSuccess.StartedAt.Equal(first.StartedAt) || s.LastSuccess.FinishedAt.Before(first.StartedAt) ||
		s.Held || s.Now.Before(first.StartedAt) {
		t.Errorf("status = %+v; want run #1 by replica-1 as last and last success, not held", s)
	}
}

func TestRun_duePeriodAfterStart(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	const period = 300 * time.Millisecond
	job := periodic.New(pool, "frequent", period)
	first := mustRun(t, job)
	var second periodic.Run
	await(t, "a second run", func() bool {
		ran, err := job.Run(t.Context(), func(_ context.Context, run periodic.Run) error {
			second = run
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ran
	})
	if second.Token != 2 || second.StartedAt.Sub(first.StartedAt) < period {
		t.Errorf("second run %+v began %v after the first; want token 2, at least %v after",
			second, second.StartedAt.Sub(first.StartedAt), period)
	}
}

func TestRun_failureDoesNotCount(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "flaky", time.Hour)
	boom := errors.New("boom: postgres://u:secret@h/d")
	ran, err := job.Run(t.Context(), func(context.Context, periodic.Run) error { return boom })
	if !ran || !errors.Is(err, boom) {
		t.Fatalf("Run = %v, %v; want true and fn's error", ran, err)
	}
	s := mustStatus(t, job)
	if s.Last.Token != 1 || s.Last.Failure != "error" || s.Last.FinishedAt.IsZero() || s.LastSuccess.Token != 0 {
		t.Errorf("status after a failure = %+v; want run #1 failed (\"error\"), no success", s)
	}
	// The next attempt runs again, with the next token.
	if run := mustRun(t, job); run.Token != 2 {
		t.Errorf("retry token = %d; want 2", run.Token)
	}
	// A Failure's text is recorded as it is.
	job2 := periodic.New(pool, "failing-command", time.Hour)
	if _, err := job2.Run(t.Context(), func(context.Context, periodic.Run) error {
		return periodic.Failure("exit status 3")
	}); err == nil {
		t.Fatal("Run: no error; want the Failure")
	}
	if s := mustStatus(t, job2); s.Last.Failure != "exit status 3" {
		t.Errorf("failure = %q; want %q", s.Last.Failure, "exit status 3")
	}
}

func TestRun_panicDoesNotCount(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	rec := &recorder{}
	job := periodic.New(pool, "panicky", time.Hour, periodic.WithHooks(rec))
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Errorf("recovered %v; want the function's panic", r)
			}
		}()
		_, _ = job.Run(t.Context(), func(context.Context, periodic.Run) error { panic("kaboom") })
	}()
	if d := rec.last(t); !d.Ran || d.Run.Failure != "panic" || d.FnErr == nil {
		t.Errorf("hook after a panic: %+v; want ran, failure \"panic\", a FnErr", d)
	}
	pgtest.AwaitAdvisoryLocks(t, dsn, "true", 0)

	// runtime.Goexit, as t.FailNow calls it, is not a success either.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = job.Run(context.Background(), func(context.Context, periodic.Run) error {
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	s := mustStatus(t, job)
	if s.Last.Token != 2 || s.Last.Failure != "aborted" || s.LastSuccess.Token != 0 {
		t.Errorf("status = %+v; want run #2 \"aborted\" and no success", s)
	}
	if run := mustRun(t, job); run.Token != 3 {
		t.Errorf("retry token = %d; want 3", run.Token)
	}
}

func TestRun_lostLockDoesNotCount(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	admin := newPool(t, dsn)
	rec := &recorder{}
	job := periodic.New(pool, "doomed", time.Hour, periodic.WithHooks(rec))
	ran, err := job.Run(t.Context(), func(ctx context.Context, run periodic.Run) error {
		pgtest.TerminateHolder(t, admin)
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), advisorylock.ErrLockLost) {
			t.Errorf("fn's context ended with %v; want ErrLockLost", context.Cause(ctx))
		}
		return nil // as if the work were done: a lost lock still does not count
	})
	if !ran || !errors.Is(err, advisorylock.ErrLockLost) {
		t.Fatalf("Run = %v, %v (skipped: %v); want true and ErrLockLost", ran, err, rec.last(t).Skipped)
	}
	s := mustStatus(t, job)
	if s.Last.Token != 1 || s.Last.Failure != "lock lost" || s.LastSuccess.Token != 0 {
		t.Errorf("status = %+v; want run #1 \"lock lost\" and no success", s)
	}
	if run := mustRun(t, job); run.Token != 2 {
		t.Errorf("retry token = %d; want 2", run.Token)
	}
}

func TestRun_maxRunTime(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "slow", time.Hour, periodic.WithMaxRunTime(100*time.Millisecond))
	ran, err := job.Run(t.Context(), func(ctx context.Context, _ periodic.Run) error {
		<-ctx.Done()
		return nil
	})
	if !ran || !errors.Is(err, periodic.ErrMaxRunTime) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, %v; want true and ErrMaxRunTime, also DeadlineExceeded", ran, err)
	}
	if s := mustStatus(t, job); s.Last.Failure != "max run time exceeded" || s.LastSuccess.Token != 0 {
		t.Errorf("status = %+v; want \"max run time exceeded\" and no success", s)
	}
}

func TestRun_minSpacing(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "spaced", time.Hour, periodic.WithMinSpacing(time.Hour))
	if _, err := job.Run(t.Context(), func(context.Context, periodic.Run) error { return errors.New("no") }); err == nil {
		t.Fatal("Run: no error; want fn's")
	}
	// The run failed, but the next may not start within the spacing.
	mustSkip(t, job)
	s := mustStatus(t, job)
	if want := s.Last.StartedAt.Add(time.Hour); !s.Due.Equal(want) {
		t.Errorf("due %v; want an hour after the failed run's start (%v)", s.Due, want)
	}
}

func TestRun_busy(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	rec := &recorder{}
	job := periodic.New(pool, "busy", time.Hour, periodic.WithHooks(rec))
	// Anything holding the name's lock keeps the job's runs out.
	l, err := advisorylock.New(pool, "busy").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mustSkip(t, job)
	if d := rec.last(t); !errors.Is(d.Skipped, advisorylock.ErrLocked) {
		t.Errorf("skip reason %v; want ErrLocked", d.Skipped)
	}
	if s := mustStatus(t, job); !s.Held || s.Last.Token != 0 {
		t.Errorf("status = %+v; want held, no run", s)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustRun(t, job)
}

// TestRun_concurrent runs one job from many goroutines, each with a pool of
// its own, at once: exactly one runs it.
func TestRun_concurrent(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	const n = 12
	var calls atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		job := periodic.New(newPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 2 }), "once", time.Hour,
			periodic.WithIdentity("g"+string(rune('a'+i))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := job.Run(context.Background(), func(context.Context, periodic.Run) error {
				calls.Add(1)
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := calls.Load(); got != 1 {
		t.Errorf("fn called %d times by %d goroutines; want 1", got, n)
	}
}

func TestRun_serverClockOnly(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	// Long enough for the three skips below to fit in one period on a loaded
	// machine (300ms did not, once, under a stress run).
	const period = time.Second
	// Three replicas whose clocks disagree with the server's and each
	// other's by an hour and more: the period is the server's.
	skews := []time.Duration{-time.Hour, 0, 90 * time.Minute}
	var jobs []*periodic.Job
	for _, skew := range skews {
		jobs = append(jobs, periodic.New(newPool(t, dsn), "skewed", period, periodic.WithClockSkew(skew),
			periodic.WithIdentity("skew"+skew.String())))
	}
	pool := newPool(t, dsn)
	recordHistory(t, pool, periodic.DefaultSchema)
	first := mustRun(t, jobs[2]) // the one an hour and a half ahead
	for _, j := range jobs {
		mustSkip(t, j) // the one an hour behind too
	}
	// Each replica in turn runs the job once the period has passed on the
	// server's clock, not before.
	for i := range 6 {
		j := jobs[i%len(jobs)]
		await(t, "the next run", func() bool {
			ran, err := j.Run(t.Context(), func(context.Context, periodic.Run) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			return ran
		})
	}
	h := readHistory(t, pool)
	ok := successes(h)
	if len(ok) != 7 || ok[0].Token != first.Token {
		t.Fatalf("successful runs %v; want 7, from #%d", ok, first.Token)
	}
	checkSpacing(t, h, period)
}

// TestRun_smallPool runs several jobs at once on a pool of one connection,
// each function using the pool too: the held locks take none of it (they are
// on lock sessions), so the runs share the one connection and all finish.
func TestRun_smallPool(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t), func(c *pgxpool.Config) { c.MaxConns = 1 })
	var wg sync.WaitGroup
	for i := range 6 {
		job := periodic.New(pool, "small-"+string(rune('a'+i)), time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ran, err := job.Run(t.Context(), func(ctx context.Context, _ periodic.Run) error {
				_, err := pool.Exec(ctx, "select pg_sleep(0.05)")
				return err
			})
			if !ran || err != nil {
				t.Errorf("%v: Run = %v, %v; want true, nil", job, ran, err)
			}
		}()
	}
	wg.Wait()
}
