package periodic_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

// awaitTimeout bounds every wait of a test for something to happen.
const awaitTimeout = 10 * time.Second

// testDB creates a database of the test's own (advisory locks and the runs
// table are per database, so tests may run in parallel) and checks, when the
// test ends, that no session holds or awaits an advisory lock in it.
func testDB(t *testing.T) string {
	t.Helper()
	return pgtest.Database(t)
}

// newPool returns a pool on dsn, checked when the test ends: see
// pgtest.NewPool.
func newPool(t *testing.T, dsn string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t, dsn, configure...)
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

// mustRun runs job once and fails t unless fn ran and succeeded; it returns
// the run fn was given.
func mustRun(t *testing.T, job *periodic.Job) periodic.Run {
	t.Helper()
	var got periodic.Run
	ran, err := job.Run(t.Context(), func(_ context.Context, run periodic.Run) error {
		got = run
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("%v: Run = %v, %v; want true, nil", job, ran, err)
	}
	return got
}

// mustSkip runs job once and fails t unless it skipped.
func mustSkip(t *testing.T, job *periodic.Job) {
	t.Helper()
	ran, err := job.Run(t.Context(), func(context.Context, periodic.Run) error {
		t.Error("fn called; want a skip")
		return nil
	})
	if err != nil || ran {
		t.Fatalf("%v: Run = %v, %v; want false, nil", job, ran, err)
	}
}

// mustStatus returns job's status, failing t on error.
func mustStatus(t *testing.T, job *periodic.Job) periodic.Status {
	t.Helper()
	s, err := job.Status(t.Context())
	if err != nil {
		t.Fatalf("%v: Status: %v", job, err)
	}
	return s
}

// history is what the runs table went through, recorded by a trigger: one
// entry per insert or update, in commit order. Every time in it is the
// server's.
type historyEntry struct {
	name        string
	run         int64
	startedAt   time.Time
	startedBy   string
	finished    bool
	failure     string
	successRun  int64
	successedAt time.Time // success_started_at
}

// recordHistory creates the runs table in schema ahead of time (with
// periodic.TableSQL), and a trigger that appends each version of its rows to
// a table of the test's, read by readHistory.
func recordHistory(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	table := pgx.Identifier{schema, periodic.TableName}.Sanitize()
	execSQL(t, pool,
		periodic.TableSQL(schema),
		`create table run_history (seq bigserial primary key, name text, run bigint, started_at timestamptz,
			started_by text, finished boolean, failure text, success_run bigint, success_started_at timestamptz)`,
		`create function log_run() returns trigger language plpgsql as $$
		begin
			insert into run_history (name, run, started_at, started_by, finished, failure, success_run, success_started_at)
			values (new.name, new.run, new.started_at, new.started_by, new.finished_at is not null, new.failure,
				new.success_run, new.success_started_at);
			return new;
		end $$`,
		`create trigger log_run after insert or update on `+table+` for each row execute function log_run()`,
	)
}

// readHistory returns the history recordHistory keeps, in order.
func readHistory(t *testing.T, pool *pgxpool.Pool) []historyEntry {
	t.Helper()
	rows, err := pool.Query(context.Background(), `select name, run, started_at, started_by, finished,
		coalesce(failure, ''), coalesce(success_run, 0), success_started_at
		from run_history order by seq`)
	if err != nil {
		t.Fatal(err)
	}
	var h []historyEntry
	for rows.Next() {
		var e historyEntry
		var succ *time.Time
		if err := rows.Scan(&e.name, &e.run, &e.startedAt, &e.startedBy, &e.finished, &e.failure, &e.successRun, &succ); err != nil {
			t.Fatal(err)
		}
		if succ != nil {
			e.successedAt = *succ
		}
		h = append(h, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return h
}

// successes returns the distinct successful runs in h, in order: token and
// start.
func successes(h []historyEntry) []periodic.Run {
	var out []periodic.Run
	for _, e := range h {
		if e.successRun != 0 && (len(out) == 0 || out[len(out)-1].Token != e.successRun) {
			out = append(out, periodic.Run{Token: e.successRun, StartedAt: e.successedAt})
		}
	}
	return out
}

// starts returns every run begun in h, in order.
func starts(h []historyEntry) []historyEntry {
	var out []historyEntry
	for _, e := range h {
		if !e.finished && (len(out) == 0 || out[len(out)-1].run != e.run) {
			out = append(out, e)
		}
	}
	return out
}

// checkSpacing fails t if two successful runs in h began less than period
// apart, and returns the shortest gap.
func checkSpacing(t *testing.T, h []historyEntry, period time.Duration) time.Duration {
	t.Helper()
	ok := successes(h)
	shortest := time.Duration(1<<63 - 1)
	for i := 1; i < len(ok); i++ {
		gap := ok[i].StartedAt.Sub(ok[i-1].StartedAt)
		shortest = min(shortest, gap)
		if gap < period {
			t.Errorf("runs #%d and #%d began %v apart on the server's clock; want at least %v",
				ok[i-1].Token, ok[i].Token, gap, period)
		}
	}
	return shortest
}

// await calls cond until it returns true, or fails t after awaitTimeout.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, awaitTimeout)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition nothing signals
	}
}

// recorder is a Hook that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	starts int
	ends   []periodic.RunEndData
}

func (r *recorder) RunStart(ctx context.Context, _ *periodic.Job, _ periodic.RunStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	return ctx
}

func (r *recorder) RunEnd(_ context.Context, _ *periodic.Job, data periodic.RunEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, data)
}

func (r *recorder) last(t *testing.T) periodic.RunEndData {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ends) == 0 || len(r.ends) != r.starts {
		t.Fatalf("hook: %d starts, %d ends; want as many, and some", r.starts, len(r.ends))
	}
	return r.ends[len(r.ends)-1]
}
