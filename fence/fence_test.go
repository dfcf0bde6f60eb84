package fence_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/fence"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// newDB returns a database of the test's own and a pool on it.
func newDB(t *testing.T) (dsn string, pool *pgxpool.Pool) {
	t.Helper()
	dsn = pgtest.Database(t)
	return dsn, pgtest.NewPool(t, dsn)
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// insert returns a write that inserts v into the table vals.
func insert(v int64) func(ctx context.Context, tx pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "insert into vals (v) values ($1)", v)
		return err
	}
}

// vals returns what the table vals holds, in insertion order.
func vals(t *testing.T, pool *pgxpool.Pool) []int64 {
	t.Helper()
	rows, err := pool.Query(t.Context(), "select v from vals order by id")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newest(t *testing.T, r *fence.Resource) int64 {
	t.Helper()
	n, err := r.Newest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A write applies with a token at least as new as the newest accepted, and
// commits with its record; an older one is refused with ErrStale, and its
// function never runs.
func TestWrite_newestWins(t *testing.T) {
	t.Parallel()
	_, pool := newDB(t)
	ctx := t.Context()
	mustExec(t, pool, "create table vals (id serial primary key, v bigint)")
	r := fence.New(pool, "res")
	if n := newest(t, r); n != 0 {
		t.Fatalf("Newest before any write = %d; want 0", n)
	}
	for _, step := range []struct {
		token int64
		stale bool
	}{{5, false}, {3, true}, {5, false}, {7, false}, {6, true}, {1, true}, {8, false}} {
		ran := false
		err := r.Write(ctx, step.token, func(ctx context.Context, tx pgx.Tx) error {
			ran = true
			return insert(step.token)(ctx, tx)
		})
		switch {
		case step.stale && !errors.Is(err, fence.ErrStale):
			t.Errorf("Write(%d): %v; want ErrStale", step.token, err)
		case step.stale && ran:
			t.Errorf("Write(%d): refused, but its function ran", step.token)
		case !step.stale && err != nil:
			t.Errorf("Write(%d): %v; want it applied", step.token, err)
		}
	}
	if got, want := vals(t, pool), []int64{5, 5, 7, 8}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("writes applied: %v; want %v", got, want)
	}
	if n := newest(t, r); n != 8 {
		t.Errorf("Newest = %d; want 8", n)
	}
	// Another resource has a newest of its own.
	if err := fence.New(pool, "other").Write(ctx, 2, insert(2)); err != nil {
		t.Errorf("Write(2) to another resource: %v", err)
	}
	err := r.Write(ctx, 4, insert(4))
	if err == nil || !strings.Contains(err.Error(), `write resource "res": stale fencing token: token 4, older than the newest accepted, 8`) {
		t.Errorf("a stale write's error: %v; want it to name the resource and both tokens", err)
	}
}

// A function that fails, panics or calls runtime.Goexit rolls its writes
// back together with the record of its token; a failure is returned as is.
func TestWrite_functionFails(t *testing.T) {
	t.Parallel()
	_, pool := newDB(t)
	ctx := t.Context()
	mustExec(t, pool, "create table vals (id serial primary key, v bigint)")
	r := fence.New(pool, "res")
	if err := r.Write(ctx, 10, insert(10)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := r.Write(ctx, 20, func(ctx context.Context, tx pgx.Tx) error {
		if err := insert(20)(ctx, tx); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Errorf("Write with a failing function: %v; want its error as is", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "panic in the write" {
				t.Errorf("recovered %v; want the function's panic", r)
			}
		}()
		_ = r.Write(ctx, 30, func(ctx context.Context, tx pgx.Tx) error {
			if err := insert(30)(ctx, tx); err != nil {
				return err
			}
			panic("panic in the write")
		})
	}()
	if got := vals(t, pool); fmt.Sprint(got) != "[10]" {
		t.Errorf("writes applied: %v; want only the first's", got)
	}
	if n := newest(t, r); n != 10 {
		t.Errorf("Newest = %d; want 10: the failed writes' tokens rolled back", n)
	}
	// A token of a failed write is not stale: it was never recorded.
	if err := r.Write(ctx, 20, insert(20)); err != nil {
		t.Errorf("Write(20) again: %v", err)
	}
}

// Writers with tokens in random order, concurrently, from several pools:
// accepted tokens never decrease in commit order (each accepted write logs
// its token, numbered in the order writers get the resource's row), the
// largest is always accepted, and every refusal is of a token older than one
// accepted before it.
func TestWrite_concurrent(t *testing.T) {
	t.Parallel()
	dsn, pool := newDB(t)
	mustExec(t, pool, "create table vals (id bigserial primary key, v bigint)")
	pools := []*pgxpool.Pool{pool, pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)}
	const writers = 200
	tokens := rand.Perm(writers)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused []int64
	)
	for i, tok := range tokens {
		r := fence.New(pools[i%len(pools)], "res")
		wg.Go(func() {
			err := r.Write(t.Context(), int64(tok+1), insert(int64(tok+1)))
			switch {
			case errors.Is(err, fence.ErrStale):
				mu.Lock()
				refused = append(refused, int64(tok+1))
				mu.Unlock()
			case err != nil:
				t.Errorf("Write(%d): %v", tok+1, err)
			}
		})
	}
	wg.Wait()
	accepted := vals(t, pool)
	for i := 1; i < len(accepted); i++ {
		if accepted[i] < accepted[i-1] {
			t.Errorf("accepted token %d after %d; want them never decreasing", accepted[i], accepted[i-1])
		}
	}
	if len(accepted) == 0 || accepted[len(accepted)-1] != writers {
		t.Errorf("accepted %v; want the largest token, %d, last", accepted, writers)
	}
	if len(accepted)+len(refused) != writers {
		t.Errorf("%d accepted and %d refused; want %d in all", len(accepted), len(refused), writers)
	}
	for _, tok := range refused {
		if tok >= accepted[len(accepted)-1] {
			t.Errorf("token %d refused; none newer was accepted", tok)
		}
	}
	t.Logf("%d writes accepted, %d refused as stale", len(accepted), len(refused))
}

// Locks and the fence together, with the resource in another database than
// the locks: a holder's write after the next holder's is refused.
func TestWrite_tokensOfLocks(t *testing.T) {
	t.Parallel()
	_, lockPool := newDB(t)
	_, resPool := newDB(t)
	ctx := t.Context()
	mustExec(t, resPool, "create table vals (id serial primary key, v bigint)")
	m := advisorylock.New(lockPool, "job", advisorylock.WithFencing())
	r := fence.New(resPool, "job-output")
	var stale *advisorylock.Lock
	for i := range 3 {
		l, err := m.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Write(ctx, l.Token(), insert(int64(i))); err != nil {
			t.Errorf("holder %d: %v", i, err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if stale == nil {
			stale = l
		}
	}
	if err := r.Write(ctx, stale.Token(), insert(-1)); !errors.Is(err, fence.ErrStale) {
		t.Errorf("the first holder writing last: %v; want ErrStale", err)
	}
	// Without fencing a lock's token is 0: refused as bad input.
	l, err := advisorylock.New(lockPool, "job").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	if err := r.Write(ctx, l.Token(), insert(-2)); !errors.Is(err, advisorylock.ErrInvalidArgument) {
		t.Errorf("Write with the token of a lock without fencing: %v; want ErrInvalidArgument", err)
	}
}

// Pools of their own (processes, to the server) writing together on a schema
// without the table: each creates it or finds it created, none fails, and
// there is one table.
func TestWrite_firstUseRace(t *testing.T) {
	t.Parallel()
	dsn, admin := newDB(t)
	const racers = 8
	pools := make([]*pgxpool.Pool, racers)
	for i := range pools {
		pools[i] = pgtest.NewPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 1 })
	}
	for round := range 4 {
		schema := fmt.Sprintf("race %d", round)
		mustExec(t, admin, "create schema "+pgx.Identifier{schema}.Sanitize())
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			r := fence.New(pools[i], fmt.Sprint("res", i%2), fence.WithSchema(schema))
			wg.Go(func() {
				<-start
				if err := r.Write(t.Context(), int64(1+i), func(context.Context, pgx.Tx) error { return nil }); err != nil && !errors.Is(err, fence.ErrStale) {
					t.Errorf("round %d, racer %d: %v", round, i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		var n int
		err := admin.QueryRow(t.Context(), `select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
			where n.nspname = $1 and c.relname = $2`, schema, fence.Table).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("round %d: %d tables (%v); want 1", round, n, err)
		}
	}
}

// A role that may not create the table, or use it, gets an error matching
// ErrPrivilege that names the role, the privilege and the object; once a DBA
// has run the documented SQL, it writes.
func TestWrite_privileges(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	role, password := srv.SecretRole(t) // before the database: dropped after it
	dsn, admin := newDB(t)
	pool := pgtest.NewPool(t, pgtest.WithCredentials(t, dsn, role, password, 0))
	ident := pgx.Identifier{role}.Sanitize()
	mustExec(t, admin, "REVOKE CREATE ON SCHEMA public FROM PUBLIC") // as PostgreSQL 15 does
	nop := func(context.Context, pgx.Tx) error { return nil }
	want := func(privilege, on string) {
		t.Helper()
		r := fence.New(pool, "res")
		for _, err := range []error{r.Write(t.Context(), 1, nop), func() error { _, err := r.Newest(t.Context()); return err }()} {
			var pe *advisorylock.PrivilegeError
			switch {
			case !errors.Is(err, advisorylock.ErrPrivilege) || !errors.As(err, &pe):
				t.Fatalf("%v; want a *PrivilegeError matching ErrPrivilege", err)
			case pe.Role != role || pe.Privilege != privilege || pe.On != on:
				t.Errorf("PrivilegeError = %+v; want role %q lacking %s on %s", pe, role, privilege, on)
			}
		}
	}
	want("CREATE", `schema "public"`)
	mustExec(t, admin, `CREATE TABLE IF NOT EXISTS public.advisorylock_fence (
		resource text PRIMARY KEY,
		token bigint NOT NULL CHECK (token > 0),
		updated_at timestamptz NOT NULL DEFAULT now()
	)`)
	want("SELECT and INSERT and UPDATE", `table "public"."advisorylock_fence"`)
	mustExec(t, admin, "GRANT SELECT, INSERT ON public.advisorylock_fence TO "+ident)
	want("UPDATE", `table "public"."advisorylock_fence"`)
	mustExec(t, admin, "GRANT USAGE ON SCHEMA public TO "+ident)
	mustExec(t, admin, "GRANT SELECT, INSERT, UPDATE ON public.advisorylock_fence TO "+ident)
	r := fence.New(pool, "res")
	for _, tok := range []int64{1, 2} {
		if err := r.Write(t.Context(), tok, nop); err != nil {
			t.Fatalf("after the grants, Write(%d): %v", tok, err)
		}
	}
	mustExec(t, admin, "create schema private")
	if err := fence.New(pool, "res", fence.WithSchema("private")).Write(t.Context(), 1, nop); !errors.Is(err, advisorylock.ErrPrivilege) ||
		!strings.Contains(err.Error(), `lacks USAGE on schema "private"`) {
		t.Errorf("a schema the role may not use: %v; want ErrPrivilege naming USAGE on it", err)
	}
}

// schemaNames are schema names that need quoting.
var schemaNames = []string{"Mixed Case", `it's`, `dou"ble`, `back\slash`, "a.b", "schéma ☃", "'; drop table x; --", strings.Repeat("n", 63)}

// The table lives in the schema named, whatever its name.
func TestWrite_schemaNames(t *testing.T) {
	t.Parallel()
	_, pool := newDB(t)
	for _, schema := range schemaNames {
		mustExec(t, pool, "create schema "+pgx.Identifier{schema}.Sanitize())
		r := fence.New(pool, "res", fence.WithSchema(schema))
		if err := r.Write(t.Context(), 3, func(context.Context, pgx.Tx) error { return nil }); err != nil {
			t.Fatalf("schema %q: %v", schema, err)
		}
		if err := r.Write(t.Context(), 2, func(context.Context, pgx.Tx) error { return nil }); !errors.Is(err, fence.ErrStale) {
			t.Errorf("schema %q: a stale write: %v; want ErrStale", schema, err)
		}
		var tok int64
		err := pool.QueryRow(t.Context(), "select token from "+pgx.Identifier{schema, fence.Table}.Sanitize()+" where resource = 'res'").Scan(&tok)
		if err != nil || tok != 3 {
			t.Errorf("schema %q: recorded %d (%v); want 3", schema, tok, err)
		}
	}
}

// Bad input is reported as ErrInvalidArgument by every call, before any
// round trip; nothing panics.
func TestResource_badInput(t *testing.T) {
	t.Parallel()
	_, pool := newDB(t)
	nop := func(context.Context, pgx.Tx) error { return nil }
	var nilResource *fence.Resource
	for _, tt := range []struct {
		name  string
		r     *fence.Resource
		token int64
		fn    func(context.Context, pgx.Tx) error
		msg   string
	}{
		{"nil pool", fence.New(nil, "res"), 1, nop, "nil pool"},
		{"empty name", fence.New(pool, ""), 1, nop, "empty resource name"},
		{"empty schema", fence.New(pool, "res", fence.WithSchema("")), 1, nop, "empty schema name"},
		{"long schema", fence.New(pool, "res", fence.WithSchema(strings.Repeat("s", 64))), 1, nop, "64 bytes"},
		{"NUL in schema", fence.New(pool, "res", fence.WithSchema("a\x00b")), 1, nop, "NUL"},
		{"schema not UTF-8", fence.New(pool, "res", nil, fence.WithSchema("\xff")), 1, nop, "UTF-8"},
		{"token 0", fence.New(pool, "res"), 0, nop, "token 0"},
		{"negative token", fence.New(pool, "res"), -5, nop, "token -5"},
		{"nil function", fence.New(pool, "res"), 1, nil, "nil function"},
		{"nil Resource", nilResource, 1, nop, "nil Resource"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := pool.Stat().AcquireCount()
			err := tt.r.Write(t.Context(), tt.token, tt.fn)
			if !errors.Is(err, advisorylock.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Write: %v; want ErrInvalidArgument saying %q", err, tt.msg)
			}
			if n := strings.Count(err.Error(), "advisorylock:"); n != 1 {
				t.Errorf("%q has %d prefixes; want 1", err, n)
			}
			if tt.fn != nil && tt.token > 0 {
				if _, err := tt.r.Newest(t.Context()); !errors.Is(err, advisorylock.ErrInvalidArgument) {
					t.Errorf("Newest: %v; want ErrInvalidArgument", err)
				}
			}
			if n := pool.Stat().AcquireCount() - before; n != 0 {
				t.Errorf("%d connections taken; want none", n)
			}
		})
	}
}

// FuzzSchema checks that the table's name in the statements names exactly
// the schema given, as the server reads it; a name that cannot be a schema's
// is refused as bad input.
func FuzzSchema(f *testing.F) {
	for _, s := range append(schemaNames, "public", "", "\x00", "\xff", `"`, `""."`, "\u2028") {
		f.Add(s)
	}
	conn := pgtest.Connect(f, pgtest.Database(f))
	f.Fuzz(func(t *testing.T, schema string) {
		err := fence.New(nil, "res", fence.WithSchema(schema)).Write(context.Background(), 1, func(context.Context, pgx.Tx) error { return nil })
		if !errors.Is(err, advisorylock.ErrInvalidArgument) {
			t.Fatalf("WithSchema(%q) on a nil pool: %v; want ErrInvalidArgument", schema, err)
		}
		if !strings.HasSuffix(err.Error(), "invalid argument: nil pool") {
			return // refused: not a name a schema can have
		}
		var parts []string
		name := pgx.Identifier{schema, fence.Table}.Sanitize()
		if err := conn.QueryRow(context.Background(), "select pg_catalog.parse_ident($1)", name).Scan(&parts); err != nil {
			t.Fatalf("schema %q: %s: %v", schema, name, err)
		}
		if len(parts) != 2 || parts[0] != schema || parts[1] != fence.Table {
			t.Fatalf("schema %q: %s names %q", schema, name, parts)
		}
	})
}
