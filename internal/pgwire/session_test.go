package pgwire_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// Many goroutines share one session, mixing Do and Send, and each gets the
// answers to its own queries: try-locks that another session makes fail on
// some keys, an id echoed back, unlocks that succeed exactly when the lock
// was taken.
func TestSession_concurrent(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	const goroutines, iterations = 16, 200
	busy := func(i int) bool { return i%8 == 0 }
	exec(t, other, `select pg_catalog.pg_advisory_lock(g, i)
		from generate_series(1, $1::int) g, generate_series(0, $2::int - 1, 8) i`, goroutines, iterations)

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 1; g <= goroutines; g++ {
		wg.Go(func() {
			// Odd goroutines use Send, even ones Do.
			query := func(sql string) (pgwire.Result, error) {
				if g%2 == 0 {
					return s.Do(t.Context(), sql)
				}
				ch := make(chan answer, 1)
				if err := s.Send(sql, func(res pgwire.Result, err error) { ch <- answer{res, err} }); err != nil {
					return pgwire.Result{}, err
				}
				a := <-ch
				return a.res, a.err
			}
			errs <- func() error {
				for i := range iterations {
					id := fmt.Sprint(g*1000 + i)
					res, err := query(fmt.Sprintf("select pg_catalog.pg_try_advisory_lock(%d,%d), %s", g, i, id))
					if err != nil || res.Err != nil {
						return fmt.Errorf("try-lock (%d,%d): %v %v", g, i, err, res.Err)
					}
					want := [][]string{{"t", id}}
					if busy(i) {
						want[0][0] = "f"
					}
					if got := values(res); !slices.EqualFunc(got, want, slices.Equal) || res.Tag != "SELECT 1" {
						return fmt.Errorf("try-lock (%d,%d) = %v %q; want %v \"SELECT 1\"", g, i, got, res.Tag, want)
					}
					// The unlock of a lock not held answers false, with a
					// warning.
					res, err = query(fmt.Sprintf("select 1 where pg_catalog.pg_advisory_unlock(%d,%d)", g, i))
					if err != nil || res.Err != nil {
						return fmt.Errorf("unlock (%d,%d): %v %v", g, i, err, res.Err)
					}
					wantTag := "SELECT 1"
					if busy(i) {
						wantTag = "SELECT 0"
					}
					if res.Tag != wantTag || len(res.Rows) != map[string]int{"SELECT 0": 0, "SELECT 1": 1}[wantTag] {
						return fmt.Errorf("unlock (%d,%d) = %v %q; want %q", g, i, values(res), res.Tag, wantTag)
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := do(t, s, "select count(*) from pg_catalog.pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"); got[0] != "0" {
		t.Errorf("the session holds %s advisory locks after unlocking them all; want 0", got[0])
	}
	t.Logf("%d queries: %d pipelined behind unanswered ones, %d writes",
		2*goroutines*iterations, pgwire.Pipelined(s), pgwire.Writes(s))
}

// Queries are sent without waiting for the answers to earlier ones: ten
// queries go out behind one blocked in the server, and their answers come
// back in order once it is granted.
func TestSend_pipelines(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(7,7)")

	answers := make(chan answer, 11)
	record := func(res pgwire.Result, err error) { answers <- answer{res, err} }
	if err := s.Send("select 'lock' from pg_catalog.pg_advisory_lock(7,7)", record); err != nil {
		t.Fatal(err)
	}
	awaitWaiting(t, other, s.PID())
	before := pgwire.Pipelined(s)
	for i := range 10 {
		if err := s.Send(fmt.Sprintf("select %d", i), record); err != nil {
			t.Fatal(err)
		}
	}
	if got := pgwire.Pipelined(s) - before; got != 10 {
		t.Errorf("%d of 10 queries sent behind an unanswered one; want 10", got)
	}
	select {
	case a := <-answers:
		t.Fatalf("an answer (%v, %v) arrived while the first query still waits in the server", a.res, a.err)
	default:
	}
	exec(t, other, "select pg_catalog.pg_advisory_unlock(7,7)")
	var got []string
	for range 11 {
		a := receive(t, answers)
		if a.err != nil || a.res.Err != nil {
			t.Fatalf("answer: %v %v", a.err, a.res.Err)
		}
		got = append(got, values(a.res)[0][0])
	}
	if want := []string{"lock", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}; !slices.Equal(got, want) {
		t.Errorf("answers %v; want %v", got, want)
	}
	do(t, s, "select pg_catalog.pg_advisory_unlock(7,7)")
}

// A Result carries rows of several statements, NULLs apart from empty
// strings, and the last command tag.
func TestDo_results(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	tests := []struct {
		name, sql string
		rows      [][]string // "<nil>" stands for NULL
		tag       string
	}{
		{"one value", "select 42", [][]string{{"42"}}, "SELECT 1"},
		{"no rows", "select 1 where false", nil, "SELECT 0"},
		{"null and empty", "select null::text, ''", [][]string{{"<nil>", ""}}, "SELECT 1"},
		{"rows", "select g, g::text || 'x' from generate_series(1,3) g", [][]string{{"1", "1x"}, {"2", "2x"}, {"3", "3x"}}, "SELECT 3"},
		{"statements", "select 1; set application_name = 'pgwire-test'; select 2", [][]string{{"1"}, {"2"}}, "SELECT 1"},
		{"set", "set lock_timeout = '1s'", nil, "SET"},
		{"empty", "", nil, ""},
		{"comment", "-- nothing", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Do(t.Context(), tt.sql)
			if err != nil || res.Err != nil {
				t.Fatalf("Do(%q): %v %v", tt.sql, err, res.Err)
			}
			if got := values(res); !slices.EqualFunc(got, tt.rows, slices.Equal) || res.Tag != tt.tag {
				t.Errorf("Do(%q) = %q %q; want %q %q", tt.sql, got, res.Tag, tt.rows, tt.tag)
			}
		})
	}
}

// A statement's error is its answer; the session goes on.
func TestDo_statementErrors(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(8,8)")
	tests := []struct {
		name, sql string
		code      string
		rows      [][]string // the rows of the statements before the failing one
	}{
		{"lock_timeout", "select pg_catalog.set_config('lock_timeout', '50ms', false), pg_catalog.pg_advisory_lock(8,8)", "55P03", nil},
		{"syntax", "selec 1", "42601", nil},
		{"after rows", "select 1; select 1/0; select 3", "22012", [][]string{{"1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Do(t.Context(), tt.sql)
			if err != nil {
				t.Fatalf("Do(%q): %v; want a statement error", tt.sql, err)
			}
			if got := sqlState(res.Err); got != tt.code {
				t.Errorf("Do(%q): statement error %v; want SQLSTATE %s", tt.sql, res.Err, tt.code)
			}
			if got := values(res); !slices.EqualFunc(got, tt.rows, slices.Equal) {
				t.Errorf("Do(%q) rows %q; want %q", tt.sql, got, tt.rows)
			}
			if got := do(t, s, "select 'still here'"); got[0] != "still here" {
				t.Errorf("after the error: %q", got)
			}
		})
	}
	if s.Err() != nil {
		t.Errorf("Err = %v after statement errors; want nil", s.Err())
	}
}

// A query that cannot be sent is refused without harm.
func TestDo_invalidQuery(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	s := connect(t, cfg, pgwire.Options{})
	if _, err := s.Do(t.Context(), "select 1\x00; select 2"); !errors.Is(err, pgwire.ErrInvalidQuery) {
		t.Errorf("Do with a NUL byte: %v; want ErrInvalidQuery", err)
	}
	if err := s.Send("select '\x00'", nil); !errors.Is(err, pgwire.ErrInvalidQuery) {
		t.Errorf("Send with a NUL byte: %v; want ErrInvalidQuery", err)
	}
	if got := do(t, s, "select 1"); got[0] != "1" {
		t.Errorf("after refused queries: %q", got)
	}
}

// ParameterStatus reports the server's parameters from the start, and the
// changes it reports later.
func TestParameterStatus(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	cfg.RuntimeParams["application_name"] = "pgwire-start"
	s := connect(t, cfg, pgwire.Options{})
	version := do(t, s, "select current_setting('server_version')")[0]
	for _, tt := range []struct{ name, want string }{
		{"server_version", version},
		{"in_hot_standby", "off"},
		{"application_name", "pgwire-start"},
		{"no_such_parameter", ""},
	} {
		if got := s.ParameterStatus(tt.name); got != tt.want {
			t.Errorf("ParameterStatus(%q) = %q; want %q", tt.name, got, tt.want)
		}
	}
	do(t, s, "set application_name = 'pgwire-later'")
	if got := s.ParameterStatus("application_name"); got != "pgwire-later" {
		t.Errorf("ParameterStatus(application_name) = %q after set; want %q", got, "pgwire-later")
	}
}

// values returns res's rows as strings, "<nil>" for NULL.
func values(res pgwire.Result) [][]string {
	var rows [][]string
	for _, row := range res.Rows {
		var r []string
		for _, v := range row {
			if v == nil {
				r = append(r, "<nil>")
			} else {
				r = append(r, string(v))
			}
		}
		rows = append(rows, r)
	}
	return rows
}
