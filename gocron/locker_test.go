package advisorylockgocron_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"

	"github.com/advisorylock/advisorylock"
	advisorylockgocron "github.com/advisorylock/advisorylock/gocron"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

// TestLocker_oncePerTick runs three gocron schedulers, each with a pool and
// a Locker of its own, against one PostgreSQL, each with the same two jobs
// every second: in each second, each job runs once across all of them.
func TestLocker_oncePerTick(t *testing.T) {
	dsn := pgtest.Database(t)
	jobs := []string{"slack-stats", "cleanup"}
	log := &runLog{}
	ss, started := startSchedulers(t, 3, log, jobs, func(i int) []gocron.SchedulerOption {
		locker := advisorylockgocron.NewLocker(newPool(t, dsn), 500*time.Millisecond, periodic.WithIdentity(identity(i)))
		return []gocron.SchedulerOption{
			gocron.WithDistributedLocker(locker),
			gocron.WithGlobalJobOptions(gocron.WithEventListeners(locker.EventListeners()...)),
		}
	})
	await(t, "five seconds of runs", func() bool { return runsAfter(log, jobs, started, 5) })
	stopped := time.Now()
	for _, s := range ss {
		if err := s.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	runs := log.snapshot()
	ticks := checkOncePerTick(t, runs, jobs, started, stopped)
	by := map[int]int{}
	for _, r := range runs {
		by[r.scheduler]++
	}
	t.Logf("%d runs of %d jobs in %d whole seconds, by scheduler: %v", len(runs), len(jobs), ticks, by)
}

// TestLocker_failedRunRetried has a job fail, then panic, then succeed: the
// failures do not count, and the next scheduled run runs it again; after the
// success, it does not run within the period.
func TestLocker_failedRunRetried(t *testing.T) {
	dsn := pgtest.Database(t)
	pool := newPool(t, dsn)
	locker := advisorylockgocron.NewLocker(pool, time.Hour)
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	var calls, skips atomic.Int32
	listeners := append(locker.EventListeners(), gocron.AfterLockError(func(_ uuid.UUID, _ string, err error) {
		if errors.Is(err, periodic.ErrNotDue) {
			skips.Add(1)
		}
	}))
	_, err = s.NewJob(gocron.DurationJob(50*time.Millisecond), gocron.NewTask(func() error {
		switch calls.Add(1) {
		case 1:
			return errors.New("the chat is down")
		case 2:
			panic("and then this")
		}
		return nil
	}), gocron.WithName("flaky"), gocron.WithSingletonMode(gocron.LimitModeReschedule), gocron.WithEventListeners(listeners...))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	await(t, "three skips after the success", func() bool { return skips.Load() >= 3 })
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the job ran %d times; want 3: two failures retried, one success", n)
	}
	st, err := periodic.New(pool, "flaky", time.Hour).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSuccess.Token != 3 || st.Last.Token != 3 {
		t.Errorf("status = %+v; want run #3 the last and a success", st)
	}
}

// TestLocker_withoutListeners shows why the listeners are needed: gocron
// does not tell a Locker how a job ended, so without them a failed run
// counts.
func TestLocker_withoutListeners(t *testing.T) {
	dsn := pgtest.Database(t)
	locker := advisorylockgocron.NewLocker(newPool(t, dsn), time.Hour)
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	var calls, skips atomic.Int32
	_, err = s.NewJob(gocron.DurationJob(50*time.Millisecond), gocron.NewTask(func() error {
		calls.Add(1)
		return errors.New("failed, unbeknown to the Locker")
	}), gocron.WithName("unheard"), gocron.WithEventListeners(gocron.AfterLockError(func(uuid.UUID, string, error) { skips.Add(1) })))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	await(t, "three skips", func() bool { return skips.Load() >= 3 })
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the job ran %d times; want 1", n)
	}
}

// TestLocker_jobFailed marks runs failed by hand, as a job's own
// AfterJobRunsWithError listener would, concurrently with other jobs' runs.
func TestLocker_jobFailed(t *testing.T) {
	dsn := pgtest.Database(t)
	pool := newPool(t, dsn)
	locker := advisorylockgocron.NewLocker(pool, time.Hour)
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk, err := locker.Lock(context.Background(), name)
			if err != nil {
				t.Error(err)
				return
			}
			if name == "b" || name == "d" {
				locker.JobFailed(name, errors.New("no"))
			}
			locker.JobFailed("not-running", nil) // ignored
			if err := lk.Unlock(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for name, failed := range map[string]bool{"a": false, "b": true, "c": false, "d": true} {
		st, err := periodic.New(pool, name, time.Hour).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if (st.Last.Failure != "") != failed || (st.LastSuccess.Token != 0) == failed {
			t.Errorf("job %s: status %+v; want failed = %v", name, st, failed)
		}
	}
	// A run under way elsewhere, then one not due: Lock says so.
	if _, err := locker.Lock(context.Background(), "a"); !errors.Is(err, periodic.ErrNotDue) {
		t.Errorf("Lock of a job run within the period = %v; want ErrNotDue", err)
	}
	l, err := advisorylock.New(pool, "b").Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locker.Lock(context.Background(), "b"); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("Lock of a job under way = %v; want ErrLocked", err)
	}
	if err := l.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLocker_badInput(t *testing.T) {
	pool := newPool(t, pgtest.Database(t))
	for name, locker := range map[string]*advisorylockgocron.Locker{
		"nil pool":    advisorylockgocron.NewLocker(nil, time.Hour),
		"zero period": advisorylockgocron.NewLocker(pool, 0),
		"bad schema":  advisorylockgocron.NewLocker(pool, time.Hour, periodic.WithSchema("")),
		"nil Locker":  nil,
	} {
		if _, err := locker.Lock(context.Background(), "job"); !errors.Is(err, advisorylock.ErrInvalidArgument) {
			t.Errorf("%s: Lock = %v; want ErrInvalidArgument", name, err)
		}
	}
	locker := advisorylockgocron.NewLocker(pool, time.Hour)
	if _, err := locker.Lock(context.Background(), ""); !errors.Is(err, advisorylock.ErrInvalidArgument) {
		t.Errorf("Lock of an unnamed job = %v; want ErrInvalidArgument", err)
	}
}
