package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

func TestStdout_onlyTheCommand(t *testing.T) {
	t.Parallel()
	_, env := testDB(t)
	r := withlock(t, env, args([]string{"-v", "quiet"}, sh("echo out; echo err >&2")...)...)
	wantCode(t, r, 0)
	if r.stdout != "out\n" {
		t.Errorf("stdout %q; want only the command's %q", r.stdout, "out\n")
	}
	for _, want := range []string{"err\n", `withlock: acquired "quiet" (exclusive) after`, `withlock: released "quiet"`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q; want %q", r.stderr, want)
		}
	}
}

func TestStdin_inherited(t *testing.T) {
	t.Parallel()
	_, env := testDB(t)
	p := startWithlockStdin(t, strings.NewReader("line 1\nline 2\n"), env, args([]string{"stdin"}, "cat")...)
	r := p.wait(t)
	wantCode(t, r, 0)
	if r.stdout != "line 1\nline 2\n" {
		t.Errorf("stdout %q; want the command to have read withlock's stdin", r.stdout)
	}
}

func TestDB_flagWinsOverEnvironment(t *testing.T) {
	t.Parallel()
	dsn, _ := testDB(t)
	port := closedPort(t)
	badEnv := []string{
		EnvConnectionString + fmt.Sprintf("=postgres://nobody:wrong@127.0.0.1:%d/nowhere?sslmode=disable", port),
		"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", port), "PGDATABASE=nowhere",
	}
	// The environment alone does not reach the database...
	wantCode(t, withlock(t, badEnv, args([]string{"x"}, "true")...), exitUnavailable)
	// ...and --db wins over it.
	r := withlock(t, badEnv, args([]string{"--db", dsn, "x"}, "echo", "ran")...)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" {
		t.Errorf("stdout %q; want the command's output", r.stdout)
	}
}

// TestOptions_afterName runs the documented form,
// withlock <lock-name> [--db URL] -- <command>, with options after the lock
// name taking effect: --db over an environment that reaches no database, -n
// and -E against a held lock, and --status's --db.
func TestOptions_afterName(t *testing.T) {
	t.Parallel()
	dsn, _ := testDB(t)
	badEnv := []string{EnvConnectionString + fmt.Sprintf("=postgres://nobody:wrong@127.0.0.1:%d/nowhere?sslmode=disable", closedPort(t))}
	r := withlock(t, badEnv, args([]string{"mylock", "--db", dsn}, "echo", "ran")...)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want the command's output alone", r.stdout, r.stderr)
	}

	const name = "after-name"
	holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	r = withlock(t, badEnv, args([]string{name, "--db=" + dsn, "-n", "-E", "3"}, "echo", "ran")...)
	wantCode(t, r, 3)
	if r.stdout != "" {
		t.Errorf("stdout %q; want nothing: the lock is held", r.stdout)
	}
	r = withlock(t, badEnv, "--status", name, "--db", dsn)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, ": 1 holder, 0 waiters\n") {
		t.Errorf("status %q; want one holder", r.stdout)
	}
}

// TestDB_libpqEnvironment runs withlock with the libpq variables alone, and
// with a service file (PGSERVICEFILE, PGSERVICE), as psql would.
func TestDB_libpqEnvironment(t *testing.T) {
	t.Parallel()
	dsn, _ := testDB(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PGHOST=" + cfg.Host, fmt.Sprintf("PGPORT=%d", cfg.Port), "PGUSER=" + cfg.User,
		"PGPASSWORD=" + cfg.Password, "PGDATABASE=" + cfg.Database, "PGSSLMODE=disable",
	}
	service := writeFile(t, t.TempDir(), "pg_service.conf", fmt.Sprintf(
		"[locks]\nhost=%s\nport=%d\nuser=%s\npassword=%s\ndbname=%s\nsslmode=disable\n",
		cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database), 0o600)
	serviceEnv := []string{"PGSERVICEFILE=" + service, "PGSERVICE=locks"}
	for _, env := range [][]string{env, serviceEnv} {
		wantCode(t, withlock(t, env, args([]string{"-n", "libpq"}, "true")...), 0)
	}
	// It locks in that database: a holder there makes it conflict.
	holdLock(t, dsn, advisorylock.KeyFromName("libpq"), false)
	for _, env := range [][]string{env, serviceEnv} {
		wantCode(t, withlock(t, env, args([]string{"-n", "libpq"}, "true")...), 1)
	}
}

func TestShared_runTogether(t *testing.T) {
	t.Parallel()
	_, env := testDB(t)
	dir := t.TempDir()
	// Each holder says it is in, then waits for the test's go-ahead: both are
	// in at once, or the test times out.
	holder := func(me string) *proc {
		script := fmt.Sprintf(`touch %q; i=0; while [ ! -e %q ]; do sleep 0.02; i=$((i+1)); [ $i -gt 1500 ] && exit 1; done; echo %s done`,
			filepath.Join(dir, me), filepath.Join(dir, "go"), me)
		return startWithlock(t, env, args([]string{"-s", "reports"}, sh(script)...)...)
	}
	a, b := holder("a"), holder("b")
	awaitFile(t, filepath.Join(dir, "a"))
	awaitFile(t, filepath.Join(dir, "b"))
	// An exclusive holder cannot join; a third shared one can.
	wantCode(t, withlock(t, env, args([]string{"-n", "reports"}, "true")...), 1)
	wantCode(t, withlock(t, env, args([]string{"-n", "-s", "reports"}, "true")...), 0)
	writeFile(t, dir, "go", "", 0o644)
	for _, p := range []*proc{a, b} {
		r := p.wait(t)
		wantCode(t, r, 0)
		if !strings.HasSuffix(r.stdout, " done\n") {
			t.Errorf("stdout %q; want the holder done", r.stdout)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	const name = "inventory"
	r := withlock(t, env, "--status", name)
	wantCode(t, r, 0)
	k1, k2, _ := advisorylock.KeyFromName(name).Pair()
	if want := fmt.Sprintf("%q (key (%d,%d)): free\n", name, k1, k2); r.stdout != want {
		t.Errorf("status of a free lock: %q; want %q", r.stdout, want)
	}

	holder := holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	waiter := startWithlock(t, env, args([]string{name}, "true")...)
	awaitLocks(t, dsn, "not granted", 1)
	waiterPID := pgtest.AdvisoryLockPIDs(t, connect(t, dsn), "not granted")[0]
	r = withlock(t, env, "--status", name)
	wantCode(t, r, 0)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], ": 1 holder, 1 waiter") || !strings.HasPrefix(lines[1], "STATE") {
		t.Fatalf("status:\n%s\nwant a title, a header, a holder and a waiter", r.stdout)
	}
	if f := strings.Fields(lines[2]); f[0] != "held" || f[1] != fmt.Sprint(backendPID(holder)) || f[2] != "exclusive" {
		t.Errorf("holder line %q; want held by pid %d, exclusive", lines[2], backendPID(holder))
	}
	if f := strings.Fields(lines[3]); f[0] != "waiting" || f[1] != fmt.Sprint(waiterPID) || f[5] != "withlock" {
		t.Errorf("waiter line %q; want pid %d waiting, application withlock", lines[3], waiterPID)
	}
	holder.Close(context.Background())
	wantCode(t, waiter.wait(t), 0)

	holdLock(t, dsn, advisorylock.Int64Key(42), true)
	r = withlock(t, env, "--status", "--key", "42")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "key 42: 1 holder, 0 waiters\n") || !strings.Contains(r.stdout, "shared") {
		t.Errorf("status of key 42:\n%s\nwant one shared holder", r.stdout)
	}
}

// TestKeys_interoperate checks the keys withlock locks against locks taken in
// SQL by any other tool, with the numbers written out.
func TestKeys_interoperate(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	holdLock(t, dsn, advisorylock.Int64Key(42), false)
	holdLock(t, dsn, advisorylock.PairKey(1, 2), false)
	// The npm package advisory-lock's key for "test-lock".
	holdLock(t, dsn, advisorylock.PairKey(-107789403, -1898803861), false)
	tests := []struct {
		lock []string
		want int
	}{
		{[]string{"--key", "42"}, 1},
		{[]string{"--key", "1,2"}, 1},
		{[]string{"--key", "(1,2)"}, 1},
		{[]string{"test-lock"}, 1},
		{[]string{"--key", "0,42"}, 0}, // the pair space is another space
		{[]string{"--key", "43"}, 0},
		{[]string{"test-lock-2"}, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.lock, " "), func(t *testing.T) {
			wantCode(t, withlock(t, env, args(append([]string{"-n"}, tt.lock...), "true")...), tt.want)
		})
	}
}

// A withlock waiting for a held lock whose waiting backend is terminated
// waits again, on a fresh session, and runs the command once the holder lets
// go: a wait holds nothing, so losing its connection is no reason to give up
// (exit 69 would send the caller away for nothing).
func TestWait_survivesTerminatedBackend(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	const name = "terminated-wait"
	holder := holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	p := startWithlock(t, env, args([]string{name}, "echo", "ran")...)
	admin := connect(t, dsn)
	pgtest.AwaitWaiters(t, admin, 1)
	first := pgtest.AdvisoryLockPIDs(t, admin, "not granted")[0]
	pgtest.Terminate(t, admin, first)
	// Waiting again, on another session.
	for {
		pgtest.AwaitWaiters(t, admin, 1)
		if w := pgtest.AdvisoryLockPIDs(t, admin, "not granted"); len(w) == 1 && w[0] != first {
			break
		}
	}
	select {
	case <-p.done:
		t.Fatalf("withlock exited (%v) while the lock was held; want it waiting\nstderr: %s", p.cmd.ProcessState, p.stderr)
	default:
	}
	if err := holder.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want the command's output alone", r.stdout, r.stderr)
	}
}

// A withlock whose wait loses its session to a database that then stays away
// past -w exits 69, saying it cannot connect: the database is away, not the
// lock busy.
func TestWait_databaseGoneExits69(t *testing.T) {
	t.Parallel()
	srv := pgtest.StartPrivate(t)
	dsn := srv.DSN() // the server's own database: a test's would outlive it
	const name = "gone-wait"
	holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	p := startWithlock(t, []string{EnvConnectionString + "=" + dsn}, args([]string{"-w", "3", name}, "echo", "ran")...)
	pgtest.AwaitWaiters(t, connect(t, dsn), 1)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t)
	wantCode(t, r, exitUnavailable)
	if r.stdout != "" || !strings.Contains(r.stderr, "cannot lock") || !strings.Contains(r.stderr, "cannot connect") {
		t.Errorf("stdout %q, stderr %q; want no command, and why the lock could not be had", r.stdout, r.stderr)
	}
}
