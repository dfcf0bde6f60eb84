package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// newSecretRole creates a login role with a password made to be found in
// any output it leaks into: see pgtest.Server.SecretRole.
func newSecretRole(t *testing.T) (name, password string) {
	t.Helper()
	return pgtest.Require(t).SecretRole(t)
}

// withUser returns dsn (a URL) with user and password replaced.
func withUser(t *testing.T, dsn, user, password string) string {
	t.Helper()
	return pgtest.WithCredentials(t, dsn, user, password, 0)
}

// noSecret fails t if r's output shows one of secrets.
func noSecret(t *testing.T, r result, secrets ...string) {
	t.Helper()
	pgtest.AssertNoSecrets(t, []string{"withlock's stdout: " + r.stdout, "withlock's stderr: " + r.stderr}, secrets...)
}

// withlock's own output (stderr, with -v; stdout with --status) never shows
// a password, whether the connection works, is refused, or is denied, with the
// settings from --db (URL or keyword/value), PG_CONNECTION_STRING or the libpq
// environment.
func TestSecrets_output(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	dsn, _ := testDB(t)
	role, password := newSecretRole(t)
	wrong := "s3cr3t-Pa55-" + rand.Text()
	secrets := []string{password, wrong, srv.Password()}
	good := withUser(t, dsn, role, password)
	cfg, err := pgx.ParseConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	keyword := fmt.Sprintf("host=%s port=%d dbname=%s user=%s password = '%s' sslmode=disable", cfg.Host, cfg.Port, cfg.Database, role, password)
	libpq := []string{
		"PGHOST=" + cfg.Host, fmt.Sprintf("PGPORT=%d", cfg.Port), "PGDATABASE=" + cfg.Database,
		"PGUSER=" + role, "PGPASSWORD=" + password, "PGSSLMODE=disable",
	}
	refused := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", role, password, closedPort(t), cfg.Database)

	tests := []struct {
		name   string
		env    []string
		argv   []string
		code   int
		stderr string // in stderr
	}{
		{"works, --db, -v", nil, args([]string{"-v", "--db", good, "secrets"}, "echo", "ran"), 0, "released"},
		{"works, --db keyword/value, -v", nil, args([]string{"-v", "--db", keyword, "secrets"}, "echo", "ran"), 0, "released"},
		{"works, PG_CONNECTION_STRING, -v", []string{EnvConnectionString + "=" + good}, args([]string{"-v", "secrets"}, "echo", "ran"), 0, "released"},
		{"works, libpq environment, -v, shared", libpq, args([]string{"-v", "-s", "secrets"}, "echo", "ran"), 0, "released"},
		{"status", nil, []string{"--db", good, "--status", "secrets"}, 0, ""},
		{"works, --slots, -v", nil, args([]string{"-v", "--slots", "2", "--db", good, "secrets"}, "echo", "ran"), 0, "released slot"},
		{"status of a semaphore", []string{EnvConnectionString + "=" + good}, []string{"--status", "--slots", "2", "secrets"}, 0, ""},
		{"refused, --slots", nil, args([]string{"-v", "--slots", "2", "--db", refused, "secrets"}, "echo", "ran"), exitUnavailable, "refused"},
		{"status, -v, by key", []string{EnvConnectionString + "=" + good}, []string{"-v", "--status", "--key", "1,2"}, 0, ""},
		{"refused, -v", nil, args([]string{"-v", "--db", refused, "secrets"}, "echo", "ran"), exitUnavailable, "refused"},
		{"refused, status", nil, []string{"--db", refused, "--status", "secrets"}, exitUnavailable, "refused"},
		{"wrong password for the role, -v", nil, args([]string{"-v", "--db", withUser(t, dsn, role, wrong), "secrets"}, "echo", "ran"), exitUnavailable, "28P01"},
		{"wrong password for the role, PGPASSWORD", append(libpq, "PGPASSWORD="+wrong), args([]string{"-v", "secrets"}, "echo", "ran"), exitUnavailable, "28P01"},
		{"wrong password for the role, status", nil, []string{"--db", withUser(t, dsn, role, wrong), "--status", "secrets"}, exitUnavailable, "28P01"},
		{"wrong password for the test's own user", nil, args([]string{"-v", "--db", pgtest.WithCredentials(t, dsn, "", wrong, 0), "secrets"}, "echo", "ran"), exitUnavailable, "28P01"},
		{"unknown database", nil, args([]string{"-v", "--db", withDatabase(t, good, "no_such_database"), "secrets"}, "echo", "ran"), exitUnavailable, "3D000"},
		// pgx quotes a keyword/value string it cannot parse in its error and
		// redacts "password=x" but not "password = x" (spaces around '=',
		// which libpq allows): withlock must not pass that text on.
		{"unparsable keyword/value, spaces around '='", nil,
			args([]string{"-v", "--db", "host=127.0.0.1 port=x user=" + role + " password = " + password, "secrets"}, "echo", "ran"), exitUsage, "cannot parse"},
		{"unparsable URL", nil, args([]string{"--db", "postgres://" + role + ":" + password + "@127.0.0.1:x/db", "secrets"}, "echo", "ran"), exitUsage, "cannot parse"},
		{"unparsable URL in the environment", []string{EnvConnectionString + "=postgres://" + role + ":" + password + "@[::1/db"},
			args([]string{"secrets"}, "echo", "ran"), exitUsage, "cannot parse"},
		{"usage error after --db", nil, []string{"--db", good, "-w", "soon", "secrets", "--", "true"}, exitUsage, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := withlock(t, tt.env, tt.argv...)
			wantCode(t, r, tt.code)
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q; want %q", r.stderr, tt.stderr)
			}
			noSecret(t, r, secrets...)
		})
	}
}

// While another session of the role holds the lock, -v names the holder
// (waiting, then timing out, or not waiting with -n), --status lists it, and
// a lock lost while the command runs is reported: none of it shows the
// password.
func TestSecrets_contention(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	dsn, _ := testDB(t)
	role, password := newSecretRole(t)
	good := withUser(t, dsn, role, password)
	env := []string{EnvConnectionString + "=" + good}
	secrets := []string{password, srv.Password()}

	holder := holdLock(t, good, advisorylock.KeyFromName("contended"), false)
	for _, argv := range [][]string{
		args([]string{"-v", "-w", "0.2", "contended"}, "true"),
		args([]string{"-v", "-n", "contended"}, "true"),
	} {
		r := withlock(t, env, argv...)
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "held by") && !strings.Contains(r.stderr, "held by another session") {
			t.Errorf("stderr %q; want it to name the holder", r.stderr)
		}
		noSecret(t, r, secrets...)
	}
	r := withlock(t, env, "--status", "contended")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, role) {
		t.Errorf("status %q; want the holder's user %s", r.stdout, role)
	}
	noSecret(t, r, secrets...)
	holder.Close(context.Background())

	p := startWithlock(t, env, args([]string{"-v", "--grace", "300ms", "doomed"}, sh("echo ready; exec sleep 30")...)...)
	p.stdout.await(t, "ready\n")
	pgtest.TerminateHolder(t, connect(t, dsn))
	r = p.wait(t)
	wantCode(t, r, exitLost)
	if !strings.Contains(r.stderr, "lost") {
		t.Errorf("stderr %q; want the loss reported", r.stderr)
	}
	noSecret(t, r, secrets...)
}

// The help's advice for keeping the password out of ps works: --db without
// a password, and the password in a pgpass file that PGPASSFILE names.
func TestSecrets_passfile(t *testing.T) {
	t.Parallel()
	dsn, _ := testDB(t)
	role, password := newSecretRole(t)
	db := withUser(t, dsn, role, "")
	passfile := writeFile(t, t.TempDir(), "pgpass", fmt.Sprintf("*:*:*:%s:%s\n", role, password), 0o600)

	// Without the file the server refuses the login...
	r := withlock(t, []string{"PGPASSFILE=" + passfile + ".missing"}, args([]string{"passfile", "--db", db}, "echo", "ran")...)
	wantCode(t, r, exitUnavailable)
	if !strings.Contains(r.stderr, "28P01") {
		t.Errorf("stderr %q; want the server's refusal (28P01)", r.stderr)
	}
	noSecret(t, r, password)
	// ...and with it, it lets the role in.
	r = withlock(t, []string{"PGPASSFILE=" + passfile}, args([]string{"-v", "passfile", "--db", db}, "echo", "ran")...)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" {
		t.Errorf("stdout %q; want the command's output", r.stdout)
	}
	noSecret(t, r, password)
}
