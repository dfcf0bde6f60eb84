package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

func TestExitStatus_command(t *testing.T) {
	t.Parallel()
	_, env := testDB(t)
	tests := []struct {
		name   string
		script string
		want   int
	}{
		{"success", "exit 0", 0},
		{"failure", "exit 7", 7},
		{"255", "exit 255", 255},
		{"killed by SIGTERM", "kill -TERM $$", 128 + 15},
		{"killed by SIGKILL", "kill -KILL $$", 128 + 9},
		{"killed by SIGSEGV", "kill -SEGV $$", 128 + 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := withlock(t, env, args([]string{"exit-status"}, sh(tt.script)...)...)
			wantCode(t, r, tt.want)
		})
	}
}

func TestExitStatus_conflict(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	const name = "busy"
	holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	dir := t.TempDir()
	ran := dir + "/ran"
	tests := []struct {
		name  string
		flags []string
		want  int
	}{
		{"-n", []string{"-n"}, 1},
		{"--nonblock -E 42", []string{"--nonblock", "-E", "42"}, 42},
		{"-E 0", []string{"-n", "-E0"}, 0},
		{"-w 0 is -n", []string{"-w", "0"}, 1},
		{"shared -n against exclusive", []string{"-s", "-n", "--conflict-exit-code=3"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := withlock(t, env, args(append(tt.flags, name), "touch", ran)...)
			wantCode(t, r, tt.want)
			if r.stdout != "" || r.stderr != "" {
				t.Errorf("stdout %q, stderr %q; want both empty (flock is silent without -v)", r.stdout, r.stderr)
			}
		})
	}
	r := withlock(t, env, args([]string{"-n", "-v", name}, "touch", ran)...)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "held by another session") {
		t.Errorf("stderr with -v: %q; want it to say the lock is held", r.stderr)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Errorf("the command ran without the lock")
	}
}

func TestTimeout_givesUpNearBound(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	const name = "slow"
	holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	for _, tt := range []struct {
		arg   string
		bound time.Duration
	}{
		{"1", time.Second},
		{"0.3", 300 * time.Millisecond},
		{"700ms", 700 * time.Millisecond},
	} {
		t.Run(tt.arg, func(t *testing.T) {
			r := withlock(t, env, args([]string{"-v", "-w", tt.arg, "-E", "9", name}, "true")...)
			wantCode(t, r, 9)
			// The wait as withlock measured it, and as the test did, which
			// adds the process's start and exit.
			m := regexp.MustCompile(`timed out after (\S+) waiting`).FindStringSubmatch(r.stderr)
			if m == nil {
				t.Fatalf("stderr %q; want it to say it timed out", r.stderr)
			}
			waited, err := time.ParseDuration(m[1])
			if err != nil || waited < tt.bound || waited > tt.bound+500*time.Millisecond {
				t.Errorf("gave up after waiting %s; want %v, and a little", m[1], tt.bound)
			}
			if r.elapsed < tt.bound || r.elapsed > tt.bound+5*time.Second {
				t.Errorf("withlock ran for %v; want %v plus start-up", r.elapsed, tt.bound)
			}
		})
	}
	awaitLocks(t, dsn, "not granted", 0)
}

func TestTimeout_acquiresWhenReleased(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	const name = "handover"
	holder := holdLock(t, dsn, advisorylock.KeyFromName(name), false)
	p := startWithlock(t, env, args([]string{"-w", "30", "-v", name}, "echo", "ran")...)
	awaitLocks(t, dsn, "not granted", 1)
	p.stderr.await(t, "waiting for")
	if !strings.Contains(p.stderr.String(), fmt.Sprintf("backend pid %d", backendPID(holder))) {
		t.Errorf("stderr %q; want it to name the holder's backend pid %d", p.stderr, backendPID(holder))
	}
	holder.Close(t.Context())
	r := p.wait(t)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" || !strings.Contains(r.stderr, "acquired") {
		t.Errorf("stdout %q, stderr %q; want the command's output, and acquired", r.stdout, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range [][]string{
		{},
		{"name"},
		{"name", "--"},
		{"name", "true"},
		{"name", "other", "--", "true"},
		{"name", "-n", "true"},
		{"name", "--bogus", "--", "true"},
		{"name", "--db", "--", "true"},
		{"-w", "-1", "name", "--", "true"},
		{"-w", "soon", "name", "--", "true"},
		{"-E", "300", "name", "--", "true"},
		{"--bogus", "name", "--", "true"},
		{"--key", "1,2,3", "--", "true"},
		{"--status", "name", "--", "true"},
		{"-w"},
	} {
		t.Run(strings.Join(tt, " "), func(t *testing.T) {
			t.Parallel()
			r := withlock(t, nil, tt...)
			wantCode(t, r, exitUsage)
			if r.stdout != "" || !strings.Contains(r.stderr, "usage: withlock") {
				t.Errorf("stdout %q, stderr %q; want nothing, and the usage", r.stdout, r.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := withlock(t, nil, "--help")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "usage: withlock") || !strings.Contains(r.stdout, "--conflict-exit-code") || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want the help on stdout", r.stdout, r.stderr)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	dsn, _ := testDB(t)
	tests := []struct {
		name string
		db   string
		want string // in stderr
	}{
		{"refused", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", srv.Password(), closedPort(t)), "refused"},
		{"wrong password", pgtest.WithCredentials(t, dsn, "", "not-the-password-4711", 0), "28P01"},
		{"unknown database", withDatabase(t, dsn, "no_such_database"), "3D000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := withlock(t, nil, args([]string{"--db", tt.db, "x"}, "echo", "ran")...)
			wantCode(t, r, exitUnavailable)
			if r.stdout != "" || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "from --db") {
				t.Errorf("stdout %q, stderr %q; want nothing, and a message with %q naming --db", r.stdout, r.stderr, tt.want)
			}
			if strings.Contains(r.stderr, "not-the-password-4711") {
				t.Errorf("stderr %q shows the password", r.stderr)
			}
		})
	}
}

func TestBadConnectionString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		env  []string
		argv []string
	}{
		{"--db url", nil, []string{"--db", "postgres://u:Pw-s3cret@127.0.0.1:notaport/db"}},
		{"--db keyword", nil, []string{"--db", "host=127.0.0.1 port=x password=Pw-s3cret"}},
		{"environment", []string{EnvConnectionString + "=postgres://u:Pw-s3cret@[::1/db"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := withlock(t, tt.env, args(append(tt.argv, "x"), "true")...)
			wantCode(t, r, exitUsage)
			if !strings.Contains(r.stderr, "cannot parse the connection string") || strings.Contains(r.stderr, "s3cret") {
				t.Errorf("stderr %q; want a parse error without the password", r.stderr)
			}
		})
	}
}

func TestCommand_cannotRun(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	dir := t.TempDir()
	plain := writeFile(t, dir, "plain", "echo hi\n", 0o644)
	junk := writeFile(t, dir, "junk", "\x00\x01\x02 not a program\n", 0o755)
	tests := []struct {
		name    string
		env     []string
		command string
		want    int
		stderr  string
	}{
		// Without a database: the command is looked for first.
		{"not found", []string{"PGHOST=/nonexistent"}, "no-such-command-4711", exitNotFound, "command not found"},
		{"missing path", []string{"PGHOST=/nonexistent"}, dir + "/missing", exitNotFound, "command not found"},
		{"not executable", []string{"PGHOST=/nonexistent"}, plain, exitCannotRun, "permission denied"},
		{"directory", []string{"PGHOST=/nonexistent"}, dir, exitCannotRun, "cannot run"},
		// Found, but the kernel refuses it: the lock is taken, then released.
		{"exec format error", env, junk, exitCannotRun, "exec format error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := withlock(t, tt.env, args([]string{"cmd"}, tt.command)...)
			wantCode(t, r, tt.want)
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q; want %q", r.stderr, tt.stderr)
			}
		})
	}
	awaitLocks(t, dsn, "true", 0)
}
