package periodic_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/periodic"
)

// TestTick_replicas has replicas in one process, each with a pool of its own
// and a clock skewed its own way, tick the same job: on the server's clock no
// two runs begin within the period, and when their context ends every Tick
// returns, leaving no lock held.
func TestTick_replicas(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	recordHistory(t, admin, periodic.DefaultSchema)
	const (
		replicas = 4
		every    = 25 * time.Millisecond
		period   = 250 * time.Millisecond
	)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var calls atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	start := time.Now()
	for i := range replicas {
		skew := time.Duration(i-replicas/2) * 37 * time.Minute
		job := periodic.New(newPool(t, dsn), "stats", period,
			periodic.WithIdentity(fmt.Sprintf("replica-%d", i)), periodic.WithClockSkew(skew))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = job.Tick(ctx, every, func(context.Context, periodic.Run) error {
				calls.Add(1)
				return nil
			})
		}()
	}
	// Until the fifth run has begun.
	await(t, "five runs", func() bool { return calls.Load() >= 5 })
	cancel()
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Tick = %v; want nil", i, err)
		}
	}
	h := readHistory(t, admin)
	ok := successes(h)
	shortest := checkSpacing(t, h, period)
	if max := int(elapsed/period) + 1; len(ok) > max || len(ok) != int(calls.Load()) {
		t.Errorf("%d successful runs, %d calls in %v; want as many, at most %d", len(ok), calls.Load(), elapsed, max)
	}
	t.Logf("%d runs in %v, period %v, ticks every %v: shortest gap %v", len(ok), elapsed.Round(time.Millisecond), period, every, shortest)
}

// TestTick_failedRunRetriedNextTick checks that a failing run leaves the
// period open: the next tick runs it again, until it succeeds, then not
// before the period.
func TestTick_failedRunRetriedNextTick(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	rec := &recorder{}
	job := periodic.New(pool, "retried", time.Hour, periodic.WithHooks(rec))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var tokens []int64
	err := job.Tick(ctx, time.Millisecond, func(_ context.Context, run periodic.Run) error {
		tokens = append(tokens, run.Token)
		if len(tokens) < 3 {
			return errors.New("not yet")
		}
		cancel()
		return nil
	})
	if err != nil {
		t.Fatalf("Tick = %v", err)
	}
	if fmt.Sprint(tokens) != "[1 2 3]" {
		t.Errorf("runs %v; want [1 2 3]", tokens)
	}
	s := mustStatus(t, job)
	if s.LastSuccess.Token != 3 {
		t.Errorf("last success #%d; want #3", s.LastSuccess.Token)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ends) != 3 || rec.ends[0].FnErr == nil || rec.ends[0].Run.Failure != "error" || rec.ends[2].FnErr != nil {
		t.Errorf("hooks saw %+v; want two failed runs and a success", rec.ends)
	}
}

// TestTick_stopsCleanly ends Tick's context while a run is under way: fn's
// context ends, the run is recorded as fn ended it, the lock is released, and
// Tick returns nil.
func TestTick_stopsCleanly(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "stopped", time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	running := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- job.Tick(ctx, time.Second, func(ctx context.Context, _ periodic.Run) error {
			close(running)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-running
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Tick = %v; want nil", err)
	}
	s := mustStatus(t, job)
	if s.Held || s.Last.Failure != "canceled" || s.LastSuccess.Token != 0 {
		t.Errorf("status = %+v; want released, run #1 \"canceled\", no success", s)
	}
	// A context already done: no attempt at all.
	if err := job.Tick(ctx, time.Second, func(context.Context, periodic.Run) error {
		t.Error("fn called with the context done")
		return nil
	}); err != nil {
		t.Errorf("Tick with its context done = %v; want nil", err)
	}
}

// TestTick_attemptsWhenDue ticks with an interval far longer than the
// period: the attempts come when the server says the next run falls due,
// not an interval later.
func TestTick_attemptsWhenDue(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	recordHistory(t, pool, periodic.DefaultSchema)
	const period = 200 * time.Millisecond
	job := periodic.New(pool, "punctual", period)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runs := 0
	err := job.Tick(ctx, time.Hour, func(context.Context, periodic.Run) error {
		if runs++; runs == 4 {
			cancel()
		}
		return nil
	})
	if err != nil || runs != 4 {
		t.Fatalf("Tick = %v after %d runs; want nil after 4", err, runs)
	}
	checkSpacing(t, readHistory(t, pool), period)
}
