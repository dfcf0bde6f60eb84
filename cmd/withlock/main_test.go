package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// envRunMain makes the test binary run withlock's main instead of the tests.
//
// The tests run withlock as a real process, and the binary they run is the
// test binary itself, which contains withlock's main: it is built once (by
// go test), under the same flags (a -race run checks withlock for races too),
// and leaves nothing behind. A `go build` into a temporary directory could not
// be cleaned up: pgtest.Main ends the process.
const envRunMain = "WITHLOCK_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envSignalCounter) == "1":
		countSignals() // the command of TestSignals_terminalOnce
	case os.Getenv(envFromTerminal) == "1":
		printFromTerminal() // for TestFromTerminal
	}
	if os.Getenv(envRunMain) == "1" {
		main()
		return // not reached: main exits
	}
	if slices.Contains(os.Args[1:], "-test.fuzzworker=true") || slices.Contains(os.Args[1:], "-test.fuzzworker") {
		// A fuzz worker runs the pure fuzz targets alone: no server needed.
		os.Exit(m.Run())
	}
	pgtest.Main(m)
}

// runTimeout bounds every withlock run of the tests.
const runTimeout = 60 * time.Second

// syncBuffer collects a process's output and lets a test await a part of it.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
	stamps  []stampAt     // markers to timestamp (see stamp), until seen
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	n, err := s.b.Write(p)
	if len(s.stamps) > 0 {
		now, text := time.Now().UnixNano(), s.b.String()
		s.stamps = slices.DeleteFunc(s.stamps, func(st stampAt) bool {
			if strings.Contains(text, st.marker) {
				st.at.Store(now)
				return true
			}
			return false
		})
	}
	return n, err
}

// stamp returns the time (Unix nanoseconds) at which the output first
// contained marker, 0 until then, filled in by the writes to come.
func (s *syncBuffer) stamp(marker string) *atomic.Int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := &atomic.Int64{}
	if strings.Contains(s.b.String(), marker) {
		at.Store(time.Now().UnixNano())
		return at
	}
	s.stamps = append(s.stamps, stampAt{marker, at})
	return at
}

type stampAt struct {
	marker string
	at     *atomic.Int64
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// await waits until the output contains want, or fails t after 20s.
func (s *syncBuffer) await(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		got, changed := s.b.String(), s.changed
		s.mu.Unlock()
		if strings.Contains(got, want) {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("output %q: still no %q after 20s", got, want)
		}
	}
}

// proc is a running withlock.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	start          time.Time
	done           chan struct{}
	err            error // Wait's, once done is closed
}

// result is how a withlock run ended.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// startWithlock starts withlock with args and an environment made of env
// alone (plus what a process needs: PATH, HOME): the tests' own PG*
// variables never leak in. withlock runs in a process group of its own, so
// that it is never in a terminal's foreground group (see fromTerminal), even
// when the tests run from one. It is killed if still running when the test
// ends.
func startWithlock(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startWithlockStdin(t, nil, env, args...)
}

// startWithlockStdin is startWithlock with stdin read from stdin (nil: the
// null device).
func startWithlockStdin(t *testing.T, stdin io.Reader, env []string, args ...string) *proc {
	t.Helper()
	env = append([]string{envRunMain + "=1"}, env...)
	if v, ok := os.LookupEnv("GORACE"); ok {
		env = append(env, "GORACE="+v)
	}
	return startProc(t, os.Args[0], stdin, env, args...)
}

// startProc starts bin with args, stdin (nil: the null device), and env on
// top of PATH and HOME, in a process group of its own; it is killed, if
// still running, when the test ends.
func startProc(t *testing.T, bin string, stdin io.Reader, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = stdin
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{cmd: cmd, stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	// A command's orphaned children may keep the pipes open.
	cmd.WaitDelay = 5 * time.Second
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// signal sends sig to withlock.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for withlock to exit, at most runTimeout, and returns how it
// ended. It fails t if withlock was killed by a signal or if its stderr shows
// the test server's password.
func (p *proc) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(runTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("withlock %q still running after %v; stderr:\n%s", p.cmd.Args[1:], runTimeout, p.stderr)
	}
	r := result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderr.String(), elapsed: time.Since(p.start)}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatalf("withlock %q: %v", p.cmd.Args[1:], p.err)
	}
	if r.code < 0 {
		t.Fatalf("withlock %q: %v; stderr:\n%s", p.cmd.Args[1:], p.cmd.ProcessState, r.stderr)
	}
	if srv := pgtest.Require(t); srv.Password() != "" && strings.Contains(r.stderr+r.stdout, srv.Password()) {
		t.Errorf("withlock %q output shows the server's password:\n%s", p.cmd.Args[1:], r.stderr)
	}
	return r
}

// withlock runs withlock to the end.
func withlock(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return startWithlock(t, env, args...).wait(t)
}

// wantCode fails t unless r ended with code.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d; want %d\nstdout: %q\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
}

// testDB creates a database of the test's own (advisory locks are per
// database) and returns the environment that points withlock at it. When the
// test ends it checks that no session holds or awaits an advisory lock there.
func testDB(t *testing.T) (dsn string, env []string) {
	t.Helper()
	dsn = pgtest.Database(t)
	return dsn, []string{EnvConnectionString + "=" + dsn}
}

// connect opens a connection of the test's own, closed when the test ends.
func connect(t *testing.T, dsn string) *pgx.Conn { return pgtest.Connect(t, dsn) }

// holdLock takes key's lock on a connection of the test's own and returns
// the connection; the lock goes when the connection closes.
func holdLock(t *testing.T, dsn string, key advisorylock.Key, shared bool) *pgx.Conn {
	t.Helper()
	conn := connect(t, dsn)
	fn := "pg_advisory_lock"
	if shared {
		fn += "_shared"
	}
	var err error
	if k1, k2, ok := key.Pair(); ok {
		_, err = conn.Exec(context.Background(), "select "+fn+"($1::int4, $2::int4)", k1, k2)
	} else {
		k, _ := key.Int64()
		_, err = conn.Exec(context.Background(), "select "+fn+"($1::int8)", k)
	}
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// backendPID returns the server process of conn's session.
func backendPID(conn *pgx.Conn) int32 { return int32(conn.PgConn().PID()) }

// awaitLocks waits until n advisory locks of dsn's database match cond (SQL
// on pg_locks), or fails t after 10s.
func awaitLocks(t *testing.T, dsn, cond string, n int) {
	t.Helper()
	pgtest.AwaitAdvisoryLocks(t, dsn, cond, n)
}

// withDatabase returns dsn pointing at database db.
func withDatabase(t *testing.T, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int { return pgtest.ClosedPort(t) }

// awaitFile waits until path exists, or fails t after 20s.
func awaitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still missing after 20s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeFile writes a file in dir with mode and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// sh is the command running script with sh -c.
func sh(script string) []string { return []string{"sh", "-c", script} }

// args joins withlock's arguments and a command.
func args(before []string, command ...string) []string {
	return append(append(append([]string{}, before...), "--"), command...)
}
