package main

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// With --fencing the command finds the lock's token in WITHLOCK_TOKEN, larger
// for each holder; without, it finds none.
func TestFencing_token(t *testing.T) {
	t.Parallel()
	_, env := testDB(t)
	echo := sh(`echo "${WITHLOCK_TOKEN-none}"`)
	r := withlock(t, env, args([]string{"plain"}, echo...)...)
	wantCode(t, r, 0)
	if r.stdout != "none\n" {
		t.Errorf("without --fencing the command saw WITHLOCK_TOKEN=%q; want it unset", r.stdout)
	}
	var last int64
	for range 3 {
		r := withlock(t, env, args([]string{"--fencing", "-v", "fenced"}, echo...)...)
		wantCode(t, r, 0)
		tok, err := strconv.ParseInt(strings.TrimSpace(r.stdout), 10, 64)
		if err != nil || tok <= last {
			t.Fatalf("WITHLOCK_TOKEN=%q after %d; want a larger number", r.stdout, last)
		}
		if want := "fencing token " + strconv.FormatInt(tok, 10); !strings.Contains(r.stderr, want) {
			t.Errorf("-v says %q; want it to say %q", r.stderr, want)
		}
		last = tok
	}
}

// The help's example runs as shown: its write applies with the newest token,
// and is refused (exit 1, "stale") once a newer holder has written.
func TestFencing_helpExample(t *testing.T) {
	t.Parallel()
	dsn, _ := testDB(t)
	conn := connect(t, dsn)
	ctx := t.Context()
	if _, err := conn.Exec(ctx, "create table report (total int, token bigint not null); insert into report values (0, 0)"); err != nil {
		t.Fatal(err)
	}
	env := libpqEnv(t, dsn) // as psql users set it; withlock reads it too
	script := sh(fencingScript)
	r := withlock(t, env, args([]string{"--fencing", "nightly"}, script...)...)
	wantCode(t, r, 0)
	var total int
	var token int64
	if err := conn.QueryRow(ctx, "select total, token from report").Scan(&total, &token); err != nil {
		t.Fatal(err)
	}
	if total != 42 || token <= 0 {
		t.Fatalf("report = (%d, %d); want the example's write, with its token", total, token)
	}
	// A newer holder has written meanwhile.
	if _, err := conn.Exec(ctx, "update report set total = 7, token = $1", token+1000); err != nil {
		t.Fatal(err)
	}
	r = withlock(t, env, args([]string{"--fencing", "nightly"}, script...)...)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "stale: a newer holder has written") {
		t.Errorf("stderr %q; want the example's stale message", r.stderr)
	}
	if err := conn.QueryRow(ctx, "select total from report").Scan(&total); err != nil || total != 7 {
		t.Errorf("report's total = %d (%v); want the newer holder's 7", total, err)
	}
}

// A role that may not create the sequence gets exit status 69 and a message
// naming the missing privilege.
func TestFencing_privilege(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	role, password := srv.SecretRole(t)
	dsn, _ := testDB(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(t.Context(), "revoke create on schema public from public"); err != nil {
		t.Fatal(err)
	}
	env := []string{EnvConnectionString + "=" + pgtest.WithCredentials(t, dsn, role, password, 0)}
	r := withlock(t, env, args([]string{"--fencing", "x"}, "true")...)
	wantCode(t, r, exitUnavailable)
	if want := `lacks CREATE on schema "public"`; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q; want it to say %q", r.stderr, want)
	}
}

// libpqEnv returns the libpq environment variables that connect to dsn (a
// URL).
func libpqEnv(t *testing.T, dsn string) []string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal("the test DSN cannot be parsed") // not err: it could show the password
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal("the test DSN is not a URL")
	}
	env := []string{"PGHOST=" + cfg.Host, "PGPORT=" + strconv.Itoa(int(cfg.Port)), "PGUSER=" + cfg.User,
		"PGPASSWORD=" + cfg.Password, "PGDATABASE=" + cfg.Database}
	if mode := u.Query().Get("sslmode"); mode != "" {
		env = append(env, "PGSSLMODE="+mode)
	}
	return env
}
