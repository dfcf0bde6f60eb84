package advisorylockgocron_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	advisorylockgocron "github.com/advisorylock/advisorylock/gocron"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

// newElector returns an Elector closed when the test ends.
func newElector(t *testing.T, pool *pgxpool.Pool, name string, period time.Duration, opts ...periodic.Option) *advisorylockgocron.Elector {
	t.Helper()
	e := advisorylockgocron.NewElector(pool, name, period, opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), awaitTimeout)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("closing an Elector: %v", err)
		}
	})
	return e
}

// TestElector_onlyTheLeaderRuns runs three gocron schedulers, each with an
// Elector of its own, against one PostgreSQL, each with the same two jobs
// every second: one scheduler leads and runs them, each job once a second.
func TestElector_onlyTheLeaderRuns(t *testing.T) {
	dsn := pgtest.Database(t)
	jobs := []string{"slack-stats", "cleanup"}
	log := &runLog{}
	ss, started := startSchedulers(t, 3, log, jobs, func(i int) []gocron.SchedulerOption {
		e := newElector(t, newPool(t, dsn), "scheduler-leader", 500*time.Millisecond, periodic.WithIdentity(identity(i)))
		return []gocron.SchedulerOption{gocron.WithDistributedElector(e)}
	})
	await(t, "six seconds of runs", func() bool { return runsAfter(log, jobs, started, 6) })
	stopped := time.Now()
	for _, s := range ss {
		if err := s.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	runs := log.snapshot()
	// From the second whole second on: the campaigns, started with the
	// Electors, may not have been won by the first.
	checkOncePerTick(t, runs, jobs, started.Add(time.Second), stopped)
	leaders := map[int]bool{}
	for _, r := range runs {
		leaders[r.scheduler] = true
	}
	if len(leaders) != 1 {
		t.Errorf("jobs ran on schedulers %v; want one leader", leaders)
	}
}

// TestElector_failoverKeepsThePeriod runs three schedulers whose timers are
// out of phase (the same job every second, starting a third of a second
// apart), and closes the leader twice: the new leader takes over, but its
// first run begins no sooner than a period after its predecessor's last, on
// the server's clock, where its own timer would have fired a third or two
// thirds of a second after it.
func TestElector_failoverKeepsThePeriod(t *testing.T) {
	dsn := pgtest.Database(t)
	admin := newPool(t, dsn)
	recordHistory(t, admin)
	const (
		period   = time.Second
		interval = time.Second
	)
	type member struct {
		s gocron.Scheduler
		e *advisorylockgocron.Elector
	}
	members := map[string]member{}
	start := time.Now().Add(500 * time.Millisecond)
	for i := range 3 {
		e := newElector(t, newPool(t, dsn), "scheduler-leader", period, periodic.WithIdentity(identity(i)))
		s, err := gocron.NewScheduler(gocron.WithDistributedElector(e))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown() })
		_, err = s.NewJob(gocron.DurationJob(interval), gocron.NewTask(func() {}), gocron.WithName("slack-stats"),
			gocron.WithStartAt(gocron.WithStartDateTime(start.Add(time.Duration(i)*interval/3))))
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		members[identity(i)] = member{s, e}
	}
	var leaders []string
	for round := range 3 {
		// Three runs by this round's leader, then it goes.
		var leader string
		await(t, fmt.Sprintf("round %d: three runs by a new leader", round), func() bool {
			ok := successes(readHistory(t, admin))
			n := 0
			for i := len(ok) - 1; i >= 0 && !slices.Contains(leaders, ok[i].By); i-- {
				n++
				leader = ok[i].By
			}
			return n >= 3
		})
		leaders = append(leaders, leader)
		if round == 2 {
			break
		}
		m := members[leader]
		if err := m.s.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := m.e.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		_ = m.s.Shutdown()
	}
	h := readHistory(t, admin)
	ok := successes(h)
	var gaps []string
	for i := 1; i < len(ok); i++ {
		if ok[i].By == ok[i-1].By {
			continue // a leader's own runs follow its scheduler's timer
		}
		gap := ok[i].StartedAt.Sub(ok[i-1].StartedAt)
		if gap < period {
			t.Errorf("runs #%d (%s) and #%d (%s), across a failover, began %v apart on the server's clock; want at least %v",
				ok[i-1].Token, ok[i-1].By, ok[i].Token, ok[i].By, gap, period)
		}
		gaps = append(gaps, fmt.Sprintf("%s→%s %v", ok[i-1].By, ok[i].By, gap.Round(time.Millisecond)))
	}
	if len(gaps) != 2 {
		t.Errorf("leaders changed %d times (%v); want 2", len(gaps), gaps)
	}
	t.Logf("%d runs, leaders %v; at the failovers: %s", len(ok), leaders, strings.Join(gaps, ", "))
}

// TestElector_takeoverWaitsOutThePeriod checks the takeover rule alone: a new
// leader approves nothing within the period after the last approval, and an
// Elector leads only while it holds the lock.
func TestElector_takeoverWaitsOutThePeriod(t *testing.T) {
	dsn := pgtest.Database(t)
	pool := newPool(t, dsn)
	ctx := t.Context()
	// Someone else holds the elector's lock: not the leader.
	other, err := advisorylock.New(pool, "leader").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := newElector(t, newPool(t, dsn), "leader", time.Hour, periodic.WithIdentity("first"))
	if err := first.IsLeader(ctx); !errors.Is(err, advisorylockgocron.ErrNotLeader) {
		t.Errorf("IsLeader while another holds the lock = %v; want ErrNotLeader", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// No approval on record: the first leader approves at once, and again.
	await(t, "the first Elector leads", func() bool { return first.IsLeader(ctx) == nil })
	if err := first.IsLeader(ctx); err != nil {
		t.Errorf("IsLeader again = %v; want nil", err)
	}
	second := newElector(t, newPool(t, dsn), "leader", time.Hour, periodic.WithIdentity("second"))
	if err := second.IsLeader(ctx); !errors.Is(err, advisorylockgocron.ErrNotLeader) {
		t.Errorf("IsLeader of the second = %v; want ErrNotLeader", err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.IsLeader(ctx); !errors.Is(err, advisorylockgocron.ErrNotLeader) {
		t.Errorf("IsLeader after Close = %v; want ErrNotLeader", err)
	}
	// The second takes the lock, and waits out the hour.
	pgtest.AwaitHolders(t, pool, 1)
	err = second.IsLeader(ctx)
	for strings.Contains(fmt.Sprint(err), "led by another") {
		time.Sleep(10 * time.Millisecond) // until it has taken over: nothing signals it
		err = second.IsLeader(ctx)
	}
	if !errors.Is(err, advisorylockgocron.ErrNotLeader) || !strings.Contains(err.Error(), "changed leaders") {
		t.Errorf("IsLeader of the new leader = %v; want ErrNotLeader, waiting out the period", err)
	}
	st, err := periodic.New(pool, "leader", time.Hour).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Last.Token != 2 || st.Last.By != "first" {
		t.Errorf("status = %+v; want two approvals, by the first", st)
	}
}

func TestElector_badInput(t *testing.T) {
	pool := newPool(t, pgtest.Database(t))
	for name, e := range map[string]*advisorylockgocron.Elector{
		"nil pool":    advisorylockgocron.NewElector(nil, "leader", time.Hour),
		"empty name":  advisorylockgocron.NewElector(pool, "", time.Hour),
		"zero period": advisorylockgocron.NewElector(pool, "leader", 0),
		"bad option":  advisorylockgocron.NewElector(pool, "leader", time.Hour, periodic.WithIdentity("")),
		"nil Elector": nil,
	} {
		if err := e.IsLeader(context.Background()); !errors.Is(err, advisorylock.ErrInvalidArgument) {
			t.Errorf("%s: IsLeader = %v; want ErrInvalidArgument", name, err)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("%s: Close = %v; want nil", name, err)
		}
	}
}

// recordHistory creates the runs table ahead of time, and a trigger that
// appends each version of its rows to a table of the test's, which
// readHistory reads.
func recordHistory(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	execSQL(t, pool,
		periodic.TableSQL("public"),
		`create table run_history (seq bigserial primary key, run bigint, started_by text, success_run bigint,
			success_started_at timestamptz)`,
		`create function log_run() returns trigger language plpgsql as $$
		begin
			insert into run_history (run, started_by, success_run, success_started_at)
			values (new.run, new.started_by, new.success_run, new.success_started_at);
			return new;
		end $$`,
		`create trigger log_run after insert or update on public.advisorylock_runs for each row execute function log_run()`,
	)
}

// readHistory returns the versions of the runs table's rows, in order.
func readHistory(t *testing.T, pool *pgxpool.Pool) []periodic.Run {
	t.Helper()
	rows, err := pool.Query(context.Background(), `select coalesce(success_run, 0), coalesce(success_started_at, 'epoch'), started_by, run
		from run_history order by seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var h []periodic.Run
	for rows.Next() {
		var r periodic.Run
		var run int64
		if err := rows.Scan(&r.Token, &r.StartedAt, &r.By, &run); err != nil {
			t.Fatal(err)
		}
		if r.Token != run {
			r.By = "" // not the successful run's own version
		}
		h = append(h, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return h
}

// successes returns each successful run once, in order, with who ran it.
func successes(h []periodic.Run) []periodic.Run {
	var out []periodic.Run
	for _, r := range h {
		if r.Token != 0 && r.By != "" && (len(out) == 0 || out[len(out)-1].Token != r.Token) {
			out = append(out, r)
		}
	}
	return out
}
