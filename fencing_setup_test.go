package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// The fencing sequence's life: created on first use, once, by processes
// racing to be first; privileges a role lacks named; what goes wrong when the
// sequence is not what it must be; any schema name.

// fencingWait bounds the tests' waits for something to happen.
const fencingWait = 10 * time.Second

// mustExec runs sql on pool, failing t if it fails.
func mustExec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// sequencesIn counts the fencing sequences in schema.
func sequencesIn(t *testing.T, pool *pgxpool.Pool, schema string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(t.Context(), `select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname = $1 and c.relname = $2 and c.relkind = 'S'`, schema, advisorylock.FencingSequence).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Pools of their own (the server cannot tell them from processes: each
// checks the sequence on its own, in sessions of its own) start together
// on a schema without the sequence, on every path: each creates it or finds
// it created, none fails, and there is one sequence.
func TestFencing_firstUseRace(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	admin := pgtest.NewPool(t, dsn)
	ctx := t.Context()
	const racers = 8
	pools := make([]*pgxpool.Pool, racers)
	for i := range pools {
		pools[i] = pgtest.NewPool(t, dsn, func(c *pgxpool.Config) { c.MaxConns = 2 })
	}
	for round := range 4 {
		schema := fmt.Sprintf("race %d", round)
		mustExec(t, admin, "create schema "+pgx.Identifier{schema}.Sanitize())
		start := make(chan struct{})
		tokens := make([]int64, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			opts := []advisorylock.Option{advisorylock.WithFencingSchema(schema)}
			switch i % 3 {
			case 0:
				opts = append(opts, advisorylock.PinConnection())
			case 2:
				opts = append(opts, advisorylock.TransactionScope())
			}
			m := advisorylock.NewWithKey(pools[i], advisorylock.Int64Key(int64(i)), opts...)
			wg.Go(func() {
				<-start
				l, err := m.Lock(ctx)
				if err == nil {
					tokens[i] = l.Token()
					err = l.Unlock(ctx)
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		seen := make(map[int64]bool)
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, racer %d: %v", round, i, err)
				continue
			}
			if tokens[i] <= 0 || seen[tokens[i]] {
				t.Errorf("round %d, racer %d: token %d; want a positive one of its own", round, i, tokens[i])
			}
			seen[tokens[i]] = true
		}
		if n := sequencesIn(t, admin, schema); n != 1 {
			t.Errorf("round %d: %d fencing sequences; want 1", round, n)
		}
	}
}

// A role that may not create the sequence, or use it, or its schema, gets an
// error matching ErrPrivilege that names the role, the privilege and the
// object, with nothing left locked; once a DBA has run the documented SQL,
// it locks.
func TestFencing_privileges(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	role, password := srv.SecretRole(t) // before the database: dropped after it
	dsn := pgtest.Database(t)
	admin := pgtest.NewPool(t, dsn)
	pool := pgtest.NewPool(t, pgtest.WithCredentials(t, dsn, role, password, 0))
	ctx := t.Context()
	ident := pgx.Identifier{role}.Sanitize()
	// As PostgreSQL 15 and later do by default: nobody but the owner may
	// create in public.
	mustExec(t, admin, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")

	wantPrivilegeError := func(t *testing.T, m *advisorylock.Mutex, privilege, on string) {
		t.Helper()
		for _, try := range []bool{false, true} {
			var err error
			if try {
				_, err = m.TryLock(ctx)
			} else {
				_, err = m.Lock(ctx)
			}
			var pe *advisorylock.PrivilegeError
			switch {
			case !errors.Is(err, advisorylock.ErrPrivilege) || !errors.As(err, &pe):
				t.Fatalf("%v: %v; want a *PrivilegeError matching ErrPrivilege", m, err)
			case pe.Role != role || pe.Privilege != privilege || pe.On != on:
				t.Errorf("PrivilegeError = %+v; want role %q lacking %s on %s", pe, role, privilege, on)
			case !strings.Contains(err.Error(), "lacks "+privilege+" on "+on):
				t.Errorf("error %q; want it to say %q", err, "lacks "+privilege+" on "+on)
			}
		}
	}
	kinds := []advisorylock.Option{advisorylock.PinConnection(), advisorylock.TransactionScope(), nil}
	for _, kind := range kinds {
		m := advisorylock.New(pool, "fenced", kind, advisorylock.WithFencing())
		wantPrivilegeError(t, m, "CREATE", `schema "public"`)
	}
	// The DBA creates the sequence, but grants nothing on it yet.
	mustExec(t, admin, "CREATE SEQUENCE IF NOT EXISTS public.advisorylock_fencing AS bigint CACHE 1 NO CYCLE")
	for _, kind := range kinds {
		m := advisorylock.New(pool, "fenced", kind, advisorylock.WithFencing())
		wantPrivilegeError(t, m, "USAGE or UPDATE", `sequence "public"."advisorylock_fencing"`)
	}
	mustExec(t, admin, "GRANT USAGE ON SCHEMA public TO "+ident)
	mustExec(t, admin, "GRANT USAGE ON SEQUENCE public.advisorylock_fencing TO "+ident)
	for _, kind := range kinds {
		l, err := advisorylock.New(pool, "fenced", kind, advisorylock.WithFencing()).Lock(ctx)
		if err != nil {
			t.Fatalf("after the grants: %v", err)
		}
		if l.Token() <= 0 {
			t.Errorf("token %d; want a positive one", l.Token())
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A schema the role may not use.
	mustExec(t, admin, "create schema private")
	wantPrivilegeError(t, advisorylock.New(pool, "fenced", advisorylock.WithFencingSchema("private")), "USAGE", `schema "private"`)
}

// A privilege revoked once the sequence was checked fails the lock statement
// after its grant, in nextval: whatever the path, nothing stays locked (a lock
// session that may hold the key is closed, and the other lock it carries is
// reported lost), and the next acquisition checks again and names the
// privilege, before any lock call.
func TestFencing_revokedAfterCheck(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	role, password := srv.SecretRole(t)
	dsn := pgtest.Database(t)
	admin := pgtest.NewPool(t, dsn)
	pool := pgtest.NewPool(t, pgtest.WithCredentials(t, dsn, role, password, 0))
	ctx := t.Context()
	ident := pgx.Identifier{role}.Sanitize()
	mustExec(t, admin, "CREATE SEQUENCE IF NOT EXISTS public.advisorylock_fencing AS bigint CACHE 1 NO CYCLE")
	for _, p := range fencedPaths {
		if p.shared {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			mustExec(t, admin, "GRANT USAGE ON SEQUENCE public.advisorylock_fencing TO "+ident)
			m := p.mutex(pool, advisorylock.Int64Key(1), advisorylock.Int64Key(2))
			l, err := p.acquire(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			var companion *advisorylock.Lock
			if strings.HasPrefix(p.name, "sessions") {
				// Held on the lock session the fenced try goes to.
				companion, err = advisorylock.NewWithKey(pool, advisorylock.Int64Key(99), p.opts...).Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = companion.Unlock(context.Background()) })
			}
			mustExec(t, admin, "REVOKE USAGE ON SEQUENCE public.advisorylock_fencing FROM "+ident)
			if _, err := p.acquire(ctx, m); err == nil || errors.Is(err, advisorylock.ErrPrivilege) {
				t.Fatalf("after the revoke: %v; want the server's error from nextval", err)
			}
			if companion != nil {
				select {
				case <-companion.Done():
				case <-time.After(fencingWait):
					t.Fatalf("the lock session's other lock still held %v after the failure; want its session closed", fencingWait)
				}
				if err := companion.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
					t.Errorf("Unlock of the other lock: %v; want ErrLockLost", err)
				}
			}
			pgtest.AwaitAdvisoryLocks(t, dsn, "true", 0)
			if _, err := p.acquire(ctx, m); !errors.Is(err, advisorylock.ErrPrivilege) {
				t.Fatalf("next acquisition: %v; want ErrPrivilege from the check", err)
			}
		})
	}
}

// A sequence dropped while in use fails the acquisitions that find it
// missing (before any lock call: nothing is left locked, and a lock session
// stays open), and the next one creates it again: its tokens start again
// from 1, which the documentation warns of.
func TestFencing_droppedSequence(t *testing.T) {
	t.Parallel()
	for _, p := range fencedPaths {
		if p.shared {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.Database(t)
			pool := pgtest.NewPool(t, dsn)
			ctx := t.Context()
			m := p.mutex(pool, advisorylock.Int64Key(1), advisorylock.Int64Key(2))
			for range 3 {
				l, err := p.acquire(ctx, m)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			mustExec(t, pool, "drop sequence public.advisorylock_fencing")
			if _, err := p.acquire(ctx, m); err == nil || !strings.Contains(err.Error(), "does not exist") {
				t.Fatalf("after the drop: %v; want the sequence reported missing", err)
			}
			pgtest.AwaitAdvisoryLocks(t, dsn, "true", 0)
			l, err := p.acquire(ctx, m)
			if err != nil {
				t.Fatalf("after that: %v; want the sequence created again", err)
			}
			if l.Token() != 1 {
				t.Errorf("first token of the new sequence = %d; want 1", l.Token())
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A fencing sequence that is not what it must be is refused, with a message
// that says why, and nothing locked.
func TestFencing_misconfigured(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	for _, tt := range []struct {
		schema, setup, msg string
	}{
		{"cached", "create sequence cached.advisorylock_fencing cache 20", "must have CACHE 1"},
		{"cycling", "create sequence cycling.advisorylock_fencing cycle", "NO CYCLE"},
		{"down", "create sequence down.advisorylock_fencing increment -1", "positive INCREMENT"},
		{"tabled", "create table tabled.advisorylock_fencing (x int)", "is not a sequence"},
		{"missing", "", `schema "missing" does not exist`},
	} {
		t.Run(tt.schema, func(t *testing.T) {
			if tt.setup != "" {
				mustExec(t, pool, "create schema "+tt.schema)
				mustExec(t, pool, tt.setup)
			}
			for _, kind := range []advisorylock.Option{advisorylock.PinConnection(), advisorylock.TransactionScope(), nil} {
				_, err := advisorylock.New(pool, "fenced", kind, advisorylock.WithFencingSchema(tt.schema)).Lock(t.Context())
				if err == nil || !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("Lock: %v; want an error saying %q", err, tt.msg)
				}
			}
		})
	}
}

// fencingSchemaNames are schema names that need quoting, escaping, or both.
var fencingSchemaNames = []string{
	"Mixed Case",
	`it's`,
	`dou"ble`,
	`back\slash`,
	`\'`,
	`E'x'`,
	`a.b`,
	"tab\there",
	"schéma ☃",
	"'; drop table x; --",
	strings.Repeat("n", 63),
}

// The sequence lives in the schema named, whatever its name, on every path.
func TestFencing_schemaNames(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	ctx := t.Context()
	for _, schema := range fencingSchemaNames {
		mustExec(t, pool, "create schema "+pgx.Identifier{schema}.Sanitize())
		for _, p := range fencedPaths {
			m := p.mutex(pool, advisorylock.Int64Key(1), advisorylock.Int64Key(2), advisorylock.WithFencingSchema(schema))
			l, err := p.acquire(ctx, m)
			if err != nil {
				t.Fatalf("schema %q, %s: %v", schema, p.name, err)
			}
			if l.Token() <= 0 {
				t.Errorf("schema %q, %s: token %d; want a positive one", schema, p.name, l.Token())
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := sequencesIn(t, pool, schema); n != 1 {
			t.Errorf("schema %q: %d fencing sequences; want 1", schema, n)
		}
	}
}

// A schema name that cannot be one is bad input, reported before any round
// trip.
func TestFencingSchema_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	var cases []badCase
	for _, tt := range []struct{ name, schema, msg string }{
		{"empty", "", "empty schema name"},
		{"too long", strings.Repeat("x", 64), "64 bytes"},
		{"NUL", "a\x00b", "NUL"},
		{"not UTF-8", "\xff", "UTF-8"},
	} {
		cases = append(cases, badCase{
			name: "WithFencingSchema: " + tt.name,
			run: func(t *testing.T, e *badEnv) []callResult {
				return lockUnlock(t, advisorylock.New(e.pool, "x", advisorylock.WithFencingSchema(tt.schema)))
			},
			want: []error{advisorylock.ErrInvalidArgument},
			msg:  tt.msg,
			noIO: true,
		})
	}
	runBadInput(t, cases)
}

// FuzzFencingSchema checks that the constant naming the fencing sequence in
// the lock statements names it in exactly the schema given, as the server
// reads it, whatever standard_conforming_strings says; a name that cannot be
// a schema's is refused as bad input.
func FuzzFencingSchema(f *testing.F) {
	for _, s := range fencingSchemaNames {
		f.Add(s)
	}
	for _, s := range []string{"public", "", "\x00", "\xff\xfe", `\\'\\''`, "$$", "\u2028", strings.Repeat("é", 32)} {
		f.Add(s)
	}
	dsn := pgtest.Database(f)
	conn := pgtest.Connect(f, dsn)
	f.Fuzz(func(t *testing.T, schema string) {
		lit := advisorylock.FencingLiteral(schema)
		text, ok := strings.CutSuffix(lit, "::pg_catalog.regclass")
		if !ok {
			t.Fatalf("FencingLiteral(%q) = %q; want a regclass constant", schema, lit)
		}
		if advisorylock.CheckFencingSchema(schema) != nil {
			_, err := advisorylock.New(nil, "x", advisorylock.WithFencingSchema(schema)).Lock(context.Background())
			if !errors.Is(err, advisorylock.ErrInvalidArgument) || !strings.Contains(err.Error(), "WithFencingSchema") {
				t.Fatalf("WithFencingSchema(%q): %v; want ErrInvalidArgument naming it", schema, err)
			}
			return
		}
		for _, conforming := range []string{"on", "off"} {
			var parts []string
			err := conn.QueryRow(context.Background(), "select set_config('standard_conforming_strings', $1, false), pg_catalog.parse_ident("+text+")",
				conforming).Scan(nil, &parts)
			if err == nil && (len(parts) != 2 || parts[0] != schema || parts[1] != advisorylock.FencingSequence) {
				err = fmt.Errorf("names %q", parts)
			}
			if err != nil {
				t.Fatalf("schema %q: %s with standard_conforming_strings=%s: %v", schema, lit, conforming, err)
			}
		}
	})
}
