package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// connectError returns pgconn's error for a connection to dsn, which must
// fail.
func connectError(t *testing.T, dsn string) *pgconn.ConnectError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal("cannot parse the test's connection string")
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected; want a failure")
	}
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("connect error %T %q; want a *pgconn.ConnectError", err, err)
	}
	return ce
}

// wantOnce fails t unless each of wants occurs exactly once in s.
func wantOnce(t *testing.T, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if n := strings.Count(s, w); n != 1 {
			t.Errorf("%q says %q %d times; want once", s, w, n)
		}
	}
}

// describe says each failed connection attempt once, and each address once:
// pgconn reports sslmode=prefer's two attempts (with TLS, then without), and
// names the address in each twice.
func TestDescribe_connectError(t *testing.T) {
	p1, p2 := closedPort(t), closedPort(t)
	for p2 == p1 {
		p2 = closedPort(t)
	}
	a1, a2 := fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	tests := []struct {
		name  string
		dsn   string
		once  []string // each exactly once
		count int      // failures ("connection refused", "no such file")
	}{
		{"prefer: two attempts alike", fmt.Sprintf("postgres://u:Pw-1@%s/db?sslmode=prefer&connect_timeout=5", a1),
			[]string{a1, "connection refused", `database "db" as user "u"`}, 1},
		{"disable: one attempt", fmt.Sprintf("postgres://u:Pw-1@%s/db?sslmode=disable&connect_timeout=5", a1),
			[]string{a1, "connection refused"}, 1},
		{"two hosts", fmt.Sprintf("postgres://u:Pw-1@127.0.0.1:%d,127.0.0.1:%d/db?sslmode=prefer&connect_timeout=5", p1, p2),
			[]string{a1, a2}, 2},
		{"socket directory", "host=/nonexistent-4711 port=5432 user=u password=Pw-1 dbname=db",
			[]string{"/nonexistent-4711/.s.PGSQL.5432", "no such file or directory"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := connectError(t, tt.dsn)
			got := describe(&advisorylock.Error{Op: "lock", Lock: `"x"`, Err: fmt.Errorf("acquiring a connection: %w", ce)})
			t.Logf("pgconn: %q\ndescribe: %q", ce.Error(), got)
			if strings.Contains(got, "\n") || strings.Contains(got, "failed to connect") || strings.Contains(got, "Pw-1") {
				t.Errorf("describe = %q; want one line, without pgconn's prefix and the password", got)
			}
			if !strings.HasPrefix(got, "cannot connect to ") {
				t.Errorf("describe = %q; want it to start with %q", got, "cannot connect to ")
			}
			wantOnce(t, got, tt.once...)
			if n := strings.Count(got, ": dial error: "); n != tt.count {
				t.Errorf("describe = %q: %d failures; want %d", got, n, tt.count)
			}
			if strings.Contains(got, "dial tcp") || strings.Contains(got, "dial unix") {
				t.Errorf("describe = %q; want the dialled address said once", got)
			}
		})
	}
}

func TestDescribe_libraryError(t *testing.T) {
	pgErr := &pgconn.PgError{Severity: "ERROR", Message: "out of shared memory", Code: "53200"}
	plain := errors.New("conn closed")
	lockErr := func(op string, err error) error { return &advisorylock.Error{Op: op, Lock: `"x"`, Err: err} }
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"sentinel", lockErr("lock", advisorylock.ErrStandby), "server is a hot standby"},
		{"server error", lockErr("holders", pgErr), "ERROR: out of shared memory (SQLSTATE 53200)"},
		{"driver error", lockErr("unlock", plain), "conn closed"},
		{"context of its own kept", lockErr("lock", fmt.Errorf("acquiring a connection: %w", plain)), "acquiring a connection: conn closed"},
		{"two causes", lockErr("unlock", fmt.Errorf("%w: %w", advisorylock.ErrLockLost, plain)), "lock lost: conn closed"},
		{"wrapped again", fmt.Errorf("running: %w", lockErr("lock", plain)), "conn closed"},
		{"not the library's", fmt.Errorf("reading: %w", plain), "reading: conn closed"},
		{"a bare sentinel", advisorylock.ErrNotHeld, "lock not held"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(tt.err); got != tt.want {
				t.Errorf("describe(%q) = %q; want %q", tt.err, got, tt.want)
			}
		})
	}
}

// Against a closed port, withlock says once, on one line of stderr, that the
// connection was refused, and nothing on stdout; the password of the URL
// never shows.
func TestMessages_closedPort(t *testing.T) {
	t.Parallel()
	pgtest.Require(t)
	password := "s3cr3t-Pa55-" + rand.Text()
	port := closedPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// sslmode=prefer, the default, makes two attempts: with TLS, then without.
	url := fmt.Sprintf("postgres://someone:%s@%s/somedb?connect_timeout=5", password, addr)
	tests := []struct {
		name string
		env  []string
		argv []string
		from string
	}{
		{"--db after the name", nil, args([]string{"x", "--db", url}, "echo", "ran"), "--db"},
		{"--db, -v", nil, args([]string{"-v", "--db", url, "x"}, "echo", "ran"), "--db"},
		{"status", nil, []string{"--status", "x", "--db", url}, "--db"},
		{"PG_CONNECTION_STRING", []string{EnvConnectionString + "=" + url}, args([]string{"x"}, "echo", "ran"), EnvConnectionString},
		{"libpq environment", []string{"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", port), "PGUSER=someone", "PGDATABASE=somedb", "PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=5"},
			args([]string{"x"}, "echo", "ran"), "the libpq environment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := withlock(t, tt.env, tt.argv...)
			wantCode(t, r, exitUnavailable)
			if r.stdout != "" {
				t.Errorf("stdout %q; want nothing", r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "withlock: cannot connect to ") {
				t.Errorf("stderr %q; want one line: withlock: cannot connect to ...", r.stderr)
			}
			wantOnce(t, r.stderr, "withlock:", "connection refused", addr, `database "somedb" as user "someone"`, "(settings from "+tt.from+")")
			if strings.Contains(r.stderr, "failed to connect") {
				t.Errorf("stderr %q; want \"cannot connect\" said once", r.stderr)
			}
			noSecret(t, r, password)
		})
	}
}

// On a hot standby the lock is refused: withlock says so once, without the
// library's prefix, naming the lock once.
func TestMessages_standby(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	standby, err := srv.StartStandby(t.Context())
	if err != nil {
		t.Fatalf("starting a standby: %v", err)
	}
	t.Cleanup(func() { standby.Stop() })
	r := withlock(t, []string{EnvConnectionString + "=" + standby.DSN()}, args([]string{"replica-lock"}, "echo", "ran")...)
	wantCode(t, r, exitUnavailable)
	if r.stdout != "" || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stdout %q, stderr %q; want nothing, and one line", r.stdout, r.stderr)
	}
	wantOnce(t, r.stderr, "withlock:", `"replica-lock"`, "hot standby")
	if strings.Contains(r.stderr, "advisorylock:") {
		t.Errorf("stderr %q; want no prefix but withlock's", r.stderr)
	}
}
