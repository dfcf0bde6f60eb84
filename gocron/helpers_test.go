package advisorylockgocron_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// awaitTimeout bounds every wait of a test for something to happen.
const awaitTimeout = 20 * time.Second

// await calls cond until it returns true, or fails t after awaitTimeout.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, awaitTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition nothing signals
	}
}

// jobRun is one run of a job, as the job saw it.
type jobRun struct {
	job       string
	scheduler int
	at        time.Time
}

// runLog collects the runs of the jobs of several schedulers.
type runLog struct {
	mu   sync.Mutex
	runs []jobRun
}

func (l *runLog) add(job string, scheduler int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, jobRun{job: job, scheduler: scheduler, at: time.Now()})
}

func (l *runLog) snapshot() []jobRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.runs)
}

// startSchedulers starts n schedulers, scheduler i made with opts(i) and
// running jobs, each named and run every second on the second (a cron entry
// with seconds), recording their runs in log. Every scheduler is shut down
// when the test ends, if it has not been. It returns the schedulers, and when
// the last of them started.
func startSchedulers(t *testing.T, n int, log *runLog, jobs []string, opts func(i int) []gocron.SchedulerOption) ([]gocron.Scheduler, time.Time) {
	t.Helper()
	var ss []gocron.Scheduler
	for i := range n {
		s, err := gocron.NewScheduler(opts(i)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown() })
		for _, name := range jobs {
			_, err := s.NewJob(gocron.CronJob("* * * * * *", true),
				gocron.NewTask(func() { log.add(name, i) }), gocron.WithName(name))
			if err != nil {
				t.Fatal(err)
			}
		}
		ss = append(ss, s)
	}
	for _, s := range ss {
		s.Start()
	}
	return ss, time.Now()
}

// checkOncePerTick fails t unless each job ran exactly once in each whole
// second from the first after started to the last before stopped, across all
// the schedulers, and returns how many seconds that was.
func checkOncePerTick(t *testing.T, runs []jobRun, jobs []string, started, stopped time.Time) int {
	t.Helper()
	first, last := started.Truncate(time.Second).Add(time.Second), stopped.Truncate(time.Second).Add(-time.Second)
	ticks := 0
	for tick := first; !tick.After(last); tick = tick.Add(time.Second) {
		ticks++
		for _, job := range jobs {
			var by []int
			for _, r := range runs {
				if r.job == job && r.at.Truncate(time.Second).Equal(tick) {
					by = append(by, r.scheduler)
				}
			}
			if len(by) != 1 {
				t.Errorf("job %s ran %d times in the second from %s (schedulers %v); want once",
					job, len(by), tick.Format("15:04:05"), by)
			}
		}
	}
	return ticks
}

// runsAfter reports whether every job has run in the second n seconds after
// started's, or later.
func runsAfter(log *runLog, jobs []string, started time.Time, n int) bool {
	tick := started.Truncate(time.Second).Add(time.Duration(n) * time.Second)
	for _, job := range jobs {
		if !slices.ContainsFunc(log.snapshot(), func(r jobRun) bool { return r.job == job && !r.at.Before(tick) }) {
			return false
		}
	}
	return true
}

// newPool returns a pool on dsn, checked when the test ends: see
// pgtest.NewPool.
func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t, dsn)
}

// execSQL runs statements on pool, failing t on error.
func execSQL(t *testing.T, pool *pgxpool.Pool, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

func identity(i int) string { return fmt.Sprintf("scheduler-%d", i) }
