package pgwire_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// Cancel ends a lock wait with 57014 and the session goes on, whether the
// session reaches the server directly or through a forwarder (the cancel
// request goes where the session's connection goes).
func TestCancel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		route func(*testing.T, *pgconn.Config)
	}{
		{"direct", func(*testing.T, *pgconn.Config) {}},
		{"proxy", func(t *testing.T, cfg *pgconn.Config) { viaProxy(t, cfg) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dsn, cfg := testDB(t)
			tt.route(t, cfg)
			s := connect(t, cfg, pgwire.Options{})
			other := otherConn(t, dsn)
			// With nothing running, a cancel request does nothing.
			if err := s.Cancel(t.Context()); err != nil {
				t.Fatalf("Cancel of nothing: %v", err)
			}
			if got := do(t, s, "select 1"); got[0] != "1" {
				t.Fatalf("after a cancel of nothing: %q", got)
			}

			exec(t, other, "select pg_catalog.pg_advisory_lock(9,9)")
			answers := make(chan answer, 1)
			if err := s.Send("select pg_catalog.pg_advisory_lock(9,9)", func(res pgwire.Result, err error) {
				answers <- answer{res, err}
			}); err != nil {
				t.Fatal(err)
			}
			awaitWaiting(t, other, s.PID())
			if err := s.Cancel(t.Context()); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			a := receive(t, answers)
			if a.err != nil || sqlState(a.res.Err) != "57014" {
				t.Errorf("cancelled lock wait: %v %v; want statement error 57014", a.err, a.res.Err)
			}
			if got := do(t, s, "select 'usable'"); got[0] != "usable" {
				t.Errorf("after Cancel: %q", got)
			}
		})
	}
}
