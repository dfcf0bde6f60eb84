package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

// everyJob returns the periodic job withlock --every records name's runs
// under, to read its status from the test.
func everyJob(t *testing.T, dsn, name string, period time.Duration) *periodic.Job {
	t.Helper()
	return periodic.New(pgtest.NewPool(t, dsn), name, period)
}

func jobStatus(t *testing.T, job *periodic.Job) periodic.Status {
	t.Helper()
	s, err := job.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEvery_concurrentLoop starts, from a shell loop, five withlock --every
// at once, as the cron entries of five machines would fire, and does it again
// in each of several periods: each time, exactly one runs the command; the
// others exit 0. The command sees its run's number in WITHLOCK_RUN.
func TestEvery_concurrentLoop(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	// The period is long enough for the five of a round to have started
	// within it, even on a loaded machine: a late one would rightly run the
	// command again in the next period.
	const (
		period = 3 * time.Second
		rounds = 3
	)
	// The command appends its run's number, and lasts long enough for the
	// others to find the lock held, or the run done.
	loop := `for i in 1 2 3 4 5; do
	"$WITHLOCK" -v --every ` + period.String() + ` slack-stats -- sh -c 'echo "$WITHLOCK_RUN" >>"$RUNS"; sleep 0.2' 2>>"$LOG.$i" &
done
wait`
	job := everyJob(t, dsn, "slack-stats", period)
	for round := 1; round <= rounds; round++ {
		// The next round once a run is due on the server's clock.
		awaitDue(t, job)
		cmd := exec.Command("sh", "-c", loop)
		cmd.Env = append(os.Environ(), env...)
		cmd.Env = append(cmd.Env, envRunMain+"=1", "WITHLOCK="+os.Args[0], "RUNS="+runs, "LOG="+filepath.Join(dir, "log"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, out)
		}
		got, err := os.ReadFile(runs)
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for i := 1; i <= round; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		if string(got) != want.String() {
			t.Fatalf("after round %d, the runs were %q; want %q: one per round", round, got, want.String())
		}
	}
	// Each withlock said why it did not run the command, or that it did.
	for i := 1; i <= 5; i++ {
		log, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("log.%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
			if !strings.Contains(line, "a run is under way") && !strings.Contains(line, "the next is due in") &&
				!strings.Contains(line, "begun") && !strings.Contains(line, "recorded as succeeded") &&
				!strings.Contains(line, "released") && !strings.Contains(line, "acquired") {
				t.Errorf("withlock %d said %q", i, line)
			}
		}
	}
	s := jobStatus(t, job)
	if s.LastSuccess.Token != rounds || s.Last.Token != rounds {
		t.Errorf("status = %+v; want %d runs, all successful", s, rounds)
	}
	t.Logf("%d rounds of 5 concurrent withlock --every %v: one run each", rounds, period)
}

// awaitDue waits until a run of job is due on the server's clock.
func awaitDue(t *testing.T, job *periodic.Job) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := jobStatus(t, job)
		if !s.Due.After(s.Now) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run due after 20s: %+v", s)
		}
		time.Sleep(min(s.Due.Sub(s.Now), 50*time.Millisecond)) // until the server's clock says so
	}
}

func TestEvery_notDueSaysWhy(t *testing.T) {
	t.Parallel()
	_, env := testDB(t)
	r := withlock(t, env, "-v", "--every", "1h", "report", "--", "sh", "-c", `echo "run $WITHLOCK_RUN"`)
	wantCode(t, r, 0)
	if r.stdout != "run 1\n" || !strings.Contains(r.stderr, `run #1 of "report" begun`) ||
		!strings.Contains(r.stderr, `run #1 of "report" recorded as succeeded`) {
		t.Errorf("first run: stdout %q, stderr %q; want run 1, begun and recorded", r.stdout, r.stderr)
	}
	r = withlock(t, env, "-v", "--every", "1h", "report", "--", "sh", "-c", `echo "run $WITHLOCK_RUN"`)
	wantCode(t, r, 0)
	if r.stdout != "" || !strings.Contains(r.stderr, `not running the command: the last successful run of "report", #1 by `) ||
		!strings.Contains(r.stderr, "the next is due in 59m") || !strings.Contains(r.stderr, "(--every 1h0m0s)") {
		t.Errorf("second run: stdout %q, stderr %q; want no run, and why", r.stdout, r.stderr)
	}
	// Without -v, nothing is said.
	r = withlock(t, env, "--every", "1h", "report", "--", "true")
	wantCode(t, r, 0)
	if r.stderr != "" {
		t.Errorf("stderr %q; want nothing without -v", r.stderr)
	}
}

func TestEvery_failedRunDoesNotCount(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	r := withlock(t, env, "-v", "--every", "1h", "flaky", "--", "sh", "-c", "exit 3")
	wantCode(t, r, 3)
	if !strings.Contains(r.stderr, `run #1 of "flaky" recorded as failed (exit status 3)`) {
		t.Errorf("stderr %q; want the failure recorded", r.stderr)
	}
	r = withlock(t, env, "--status", "--every", "1h", "flaky")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "last run:     #1 by ") || !strings.Contains(r.stdout, "failed after ") ||
		!strings.Contains(r.stdout, ": exit status 3\n") || !strings.Contains(r.stdout, "last success: none\n") ||
		!strings.Contains(r.stdout, "next due:     now (--every 1h0m0s)\n") {
		t.Errorf("status:\n%s\nwant run #1 failed with exit status 3, no success, due now", r.stdout)
	}
	// Killed by a signal: not a success either.
	r = withlock(t, env, "--every", "1h", "flaky", "--", "sh", "-c", "kill -KILL $$")
	wantCode(t, r, 128+9)
	if s := jobStatus(t, everyJob(t, dsn, "flaky", time.Hour)); s.Last.Token != 2 || s.Last.Failure != "killed by signal 9 (killed)" {
		t.Errorf("status = %+v; want run #2 killed by signal 9", s)
	}
	// The next runs, and counts.
	r = withlock(t, env, "--every", "1h", "flaky", "--", "sh", "-c", `test "$WITHLOCK_RUN" = 3`)
	wantCode(t, r, 0)
	r = withlock(t, env, "--status", "--every", "1h", "flaky")
	if !strings.Contains(r.stdout, "last run:     #3 by ") || !strings.Contains(r.stdout, ", took ") ||
		strings.Contains(r.stdout, "last success:") || !strings.Contains(r.stdout, "next due:     in 59m") {
		t.Errorf("status:\n%s\nwant run #3 the last and successful, due in an hour", r.stdout)
	}
}

func TestEvery_runUnderWay(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	holder := holdLock(t, dsn, advisorylock.KeyFromName("busy"), false)
	r := withlock(t, env, "-v", "--every", "1h", "busy", "--", "echo", "ran")
	wantCode(t, r, 0)
	if r.stdout != "" || !strings.Contains(r.stderr, fmt.Sprintf(`not running the command: "busy" is held, by backend pid %d`, backendPID(holder))) ||
		!strings.Contains(r.stderr, "a run is under way") {
		t.Errorf("stdout %q, stderr %q; want no run, and why", r.stdout, r.stderr)
	}
	// -n: a conflict, as without --every.
	r = withlock(t, env, "-n", "-E", "7", "--every", "1h", "busy", "--", "echo", "ran")
	wantCode(t, r, 7)
	// -w: waits for the run under way, then runs.
	p := startWithlock(t, env, "-w", "20", "--every", "1h", "busy", "--", "echo", "ran")
	awaitLocks(t, dsn, "not granted", 1)
	holder.Close(context.Background())
	r = p.wait(t)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" {
		t.Errorf("stdout %q; want the command run once the lock was free", r.stdout)
	}
	// --status shows the run under way.
	p = startWithlock(t, env, "--every", "1ms", "busy", "--", "sh", "-c", "echo started; sleep 30")
	p.stdout.await(t, "started\n")
	r = withlock(t, env, "--status", "busy")
	if !strings.Contains(r.stdout, "last run:     #2 by ") || !strings.Contains(r.stdout, ", under way\n") {
		t.Errorf("status:\n%s\nwant run #2 under way", r.stdout)
	}
	p.signal(t, 15)
	wantCode(t, p.wait(t), 128+15)
}

func TestEvery_lostLockDoesNotCount(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	p := startWithlock(t, env, "--every", "1h", "doomed", "--", "sh", "-c", "echo ready; sleep 30")
	p.stdout.await(t, "ready\n")
	pgtest.TerminateHolder(t, connect(t, dsn))
	r := p.wait(t)
	wantCode(t, r, exitLost)
	if !strings.Contains(r.stderr, "run #1 does not count") {
		t.Errorf("stderr %q; want it to say the run does not count", r.stderr)
	}
	if s := jobStatus(t, everyJob(t, dsn, "doomed", time.Hour)); s.Last.Failure != "lock lost" || s.LastSuccess.Token != 0 {
		t.Errorf("status = %+v; want run #1 \"lock lost\", no success", s)
	}
	wantCode(t, withlock(t, env, "--every", "1h", "doomed", "--", "true"), 0)
	if s := jobStatus(t, everyJob(t, dsn, "doomed", time.Hour)); s.LastSuccess.Token != 2 {
		t.Errorf("status = %+v; want run #2 a success", s)
	}
}

// TestEvery_privileges runs withlock --every as a role that may not create
// the runs table: it says which privilege is missing, and runs nothing.
func TestEvery_privileges(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	role, password := srv.SecretRole(t)
	dsn := pgtest.Database(t)
	admin := pgtest.NewPool(t, dsn)
	if _, err := admin.Exec(context.Background(), "revoke create on schema public from public"); err != nil {
		t.Fatal(err)
	}
	env := []string{EnvConnectionString + "=" + pgtest.WithCredentials(t, dsn, role, password, 0)}
	r := withlock(t, env, "--every", "1h", "report", "--", "echo", "ran")
	wantCode(t, r, exitUnavailable)
	if r.stdout != "" || !strings.Contains(r.stderr, `cannot begin a run of "report": role "`+role+
		`" lacks CREATE on schema "public", needed to create table "public"."advisorylock_runs"`) {
		t.Errorf("stdout %q, stderr %q; want no run, and the missing privilege", r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, password) {
		t.Error("stderr shows the password")
	}
	// --schema: in a schema of the role's own, it works.
	exec := func(pool *pgxpool.Pool, sql string) {
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(admin, `create schema "Jobs" authorization `+role)
	r = withlock(t, env, "--every", "1h", "--schema", "Jobs", "report", "--", "echo", "ran")
	wantCode(t, r, 0)
	if r.stdout != "ran\n" {
		t.Errorf("stdout %q; want the command run", r.stdout)
	}
	r = withlock(t, env, "--status", "--schema", "Jobs", "report")
	if !strings.Contains(r.stdout, "last run:     #1 by ") {
		t.Errorf("status:\n%s\nwant run #1", r.stdout)
	}
	// A schema name PostgreSQL would truncate: a usage error.
	r = withlock(t, env, "--every", "1h", "--schema", strings.Repeat("s", 64), "report", "--", "echo", "ran")
	wantCode(t, r, exitUsage)
}
