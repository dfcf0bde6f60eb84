package periodic_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/periodic"
)

// TestTable_createdOnceByConcurrentStarts has processes that start together
// (here goroutines, each on a connection of its own) all find the table
// missing and create it at once: every one succeeds, and the table is made
// once.
func TestTable_createdOnceByConcurrentStarts(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	execSQL(t, admin, `create schema "Jobs ""2"""`)
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		// Different names, so that every one gets as far as the table.
		job := periodic.New(newPool(t, dsn), "job-"+string(rune('a'+i)), time.Hour, periodic.WithSchema(`Jobs "2"`))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = job.Run(context.Background(), func(context.Context, periodic.Run) error { return nil })
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("job %d: %v", i, err)
		}
	}
	var rows int
	if err := admin.QueryRow(t.Context(), `select count(*) from "Jobs ""2""".advisorylock_runs`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Errorf("%d rows in the runs table; want %d", rows, n)
	}
}

// privilegeEnv is a database with a role, app, that has no privilege but
// CONNECT and USAGE on schema public (CREATE on it revoked, as PostgreSQL 15
// does by default).
type privilegeEnv struct {
	admin   *pgxpool.Pool
	appDSN  string
	appRole string
}

func newPrivilegeEnv(t *testing.T) privilegeEnv {
	t.Helper()
	srv := pgtest.Require(t)
	role, password := srv.SecretRole(t)
	dsn := testDB(t)
	admin := newPool(t, dsn)
	execSQL(t, admin, "revoke create on schema public from public")
	return privilegeEnv{admin: admin, appDSN: pgtest.WithCredentials(t, dsn, role, password, 0), appRole: role}
}

func wantPrivilegeError(t *testing.T, err error, role, privilege, on string) {
	t.Helper()
	var pe *advisorylock.PrivilegeError
	if !errors.Is(err, advisorylock.ErrPrivilege) || !errors.As(err, &pe) {
		t.Fatalf("error %v; want a PrivilegeError", err)
	}
	if pe.Role != role || pe.Privilege != privilege || pe.On != on {
		t.Errorf("role %q lacks %s on %s; want %q, %s on %s", pe.Role, pe.Privilege, pe.On, role, privilege, on)
	}
	if want := fmt.Sprintf("role %q lacks %s on %s", role, privilege, on); !strings.Contains(err.Error(), want) {
		t.Errorf("error text %q; want it to say %q", err, want)
	}
	if strings.Count(err.Error(), "advisorylock:") != 1 {
		t.Errorf("error text %q; want one prefix", err)
	}
}

// TestTable_privileges walks a role without CREATE through the way to a
// working job: each refusal names the privilege it needs.
func TestTable_privileges(t *testing.T) {
	t.Parallel()
	env := newPrivilegeEnv(t)
	pool := newPool(t, env.appDSN)
	job := periodic.New(pool, "report", time.Hour)
	noop := func(context.Context, periodic.Run) error { return nil }
	table := `table "public"."advisorylock_runs"`

	// No CREATE on the schema: the table cannot be made on first use.
	ran, err := job.Run(t.Context(), noop)
	if ran {
		t.Error("ran without a runs table")
	}
	wantPrivilegeError(t, err, env.appRole, "CREATE", `schema "public"`)
	want := `advisorylock: run job "report": role "` + env.appRole + `" lacks CREATE on schema "public", ` +
		`needed to create table "public"."advisorylock_runs"`
	if err.Error() != want {
		t.Errorf("error %q; want %q", err, want)
	}
	// Tick stops on it: no retry can mend it.
	if err := job.Tick(t.Context(), time.Millisecond, noop); !errors.Is(err, advisorylock.ErrPrivilege) {
		t.Errorf("Tick = %v; want ErrPrivilege", err)
	}
	// Status creates nothing, and is not refused for that.
	if s := mustStatus(t, job); s.Last.Token != 0 || s.Now.IsZero() {
		t.Errorf("status without a table = %+v; want no runs and the server's clock", s)
	}

	// A DBA creates the table ahead of time, and grants SELECT only.
	execSQL(t, env.admin, periodic.TableSQL("public"), "grant select on public.advisorylock_runs to "+pgx.Identifier{env.appRole}.Sanitize())
	_, err = job.Run(t.Context(), noop)
	wantPrivilegeError(t, err, env.appRole, "INSERT and UPDATE", table)
	mustStatus(t, job) // SELECT is all Status needs

	role := pgx.Identifier{env.appRole}.Sanitize()
	execSQL(t, env.admin, "grant insert on public.advisorylock_runs to "+role)
	_, err = job.Run(t.Context(), noop)
	wantPrivilegeError(t, err, env.appRole, "UPDATE", table)

	execSQL(t, env.admin, "grant update on public.advisorylock_runs to "+role)
	mustRun(t, job)

	// Revoked after this process checked the table: the refusal makes it
	// check again, and say what is missing.
	execSQL(t, env.admin, "revoke update on public.advisorylock_runs from "+role)
	job2 := periodic.New(pool, "report-2", time.Hour)
	_, err = job2.Run(t.Context(), noop)
	wantPrivilegeError(t, err, env.appRole, "UPDATE", table)
	execSQL(t, env.admin, "grant update on public.advisorylock_runs to "+role)
	mustRun(t, job2)

	// Without SELECT, Status is refused too.
	execSQL(t, env.admin, "revoke select on public.advisorylock_runs from "+role)
	_, err = job.Status(t.Context())
	wantPrivilegeError(t, err, env.appRole, "SELECT", table)
}

func TestTable_noUsageOnSchema(t *testing.T) {
	t.Parallel()
	env := newPrivilegeEnv(t)
	execSQL(t, env.admin, "create schema private")
	job := periodic.New(newPool(t, env.appDSN), "report", time.Hour, periodic.WithSchema("private"))
	_, err := job.Run(t.Context(), func(context.Context, periodic.Run) error { return nil })
	wantPrivilegeError(t, err, env.appRole, "USAGE", `schema "private"`)
}

func TestTable_missingSchema(t *testing.T) {
	t.Parallel()
	job := periodic.New(newPool(t, testDB(t)), "report", time.Hour, periodic.WithSchema("nowhere"))
	noop := func(context.Context, periodic.Run) error { return nil }
	_, err := job.Run(t.Context(), noop)
	if err == nil || !strings.Contains(err.Error(), `schema "nowhere" does not exist`) {
		t.Errorf("Run = %v; want it to say the schema does not exist", err)
	}
	if err := job.Tick(t.Context(), time.Millisecond, noop); err == nil {
		t.Error("Tick = nil; want it to stop on a missing schema")
	}
}

// TestTableSQL_documented checks that the package documentation and the
// README show the statement a Job runs, column for column.
func TestTableSQL_documented(t *testing.T) {
	want := periodic.TableSQL("public")
	if !strings.Contains(want, `create table if not exists "public"."advisorylock_runs" (`) {
		t.Fatalf("TableSQL(public) = %q; want the quoted, qualified table", want)
	}
	// The documents write the name unquoted.
	want = strings.Replace(want, `"public"."advisorylock_runs"`, "public.advisorylock_runs", 1)
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// doc.go's comment as text: "//" and "// " dropped, code unindented.
	text := regexp.MustCompile(`(?m)^//\t?|^// ?`).ReplaceAllString(string(doc), "")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"doc.go": text, "README.md": string(readme)} {
		if !strings.Contains(text, want) {
			t.Errorf("%s does not show the runs table as TableSQL makes it:\n%s", name, want)
		}
		for _, grant := range []string{"grant select, insert, update on public.advisorylock_runs to"} {
			if !strings.Contains(text, grant) {
				t.Errorf("%s does not show %q", name, grant)
			}
		}
	}
}

// FuzzSchema checks that any schema name is used as given, quoted: either
// refused as bad input before any round trip, or the table lands in exactly
// that schema, whatever quotes, spaces or SQL the name holds.
func FuzzSchema(f *testing.F) {
	for _, s := range []string{
		"public", "Jobs", "jobs", `we"ird`, `a"."b`, "with space", `"; drop table pg_class; --`,
		"ünïcode", "a.b", "$1", strings.Repeat("x", 63), strings.Repeat("é", 31) + "x",
		strings.Repeat("x", 64), "", "nul\x00byte", "\xff", "tab\there",
	} {
		f.Add(s)
	}
	// One database for every input: a fuzzing run makes many.
	pool := pgtest.NewPool(f, pgtest.Require(f).CreateDatabase(f))
	f.Fuzz(func(t *testing.T, schema string) {
		job := periodic.New(pool, "fuzz", time.Hour, periodic.WithSchema(schema))
		valid := schema != "" && len(schema) <= 63 && utf8.ValidString(schema) && !strings.Contains(schema, "\x00")
		if !valid {
			_, err := job.Run(t.Context(), func(context.Context, periodic.Run) error { return nil })
			if !errors.Is(err, advisorylock.ErrInvalidArgument) {
				t.Fatalf("schema %q: Run = %v; want ErrInvalidArgument", schema, err)
			}
			return
		}
		ctx := t.Context()
		ident := pgx.Identifier{schema}.Sanitize()
		if _, err := pool.Exec(ctx, "drop schema if exists "+ident+" cascade; create schema "+ident); err != nil {
			t.Fatalf("schema %q: %v", schema, err)
		}
		mustRun(t, job)
		var where string
		err := pool.QueryRow(ctx, `select n.nspname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
			where c.relname = 'advisorylock_runs'`).Scan(&where)
		if err != nil || where != schema {
			t.Fatalf("schema %q: the table is in %q (%v); want exactly there and nowhere else", schema, where, err)
		}
		if _, err := pool.Exec(ctx, "drop schema "+ident+" cascade"); err != nil {
			t.Fatal(err)
		}
	})
}
