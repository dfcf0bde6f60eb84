package periodic_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/periodic"
)

// TestNew_badInput checks that every call on a Job made from bad input fails
// with ErrInvalidArgument, names what was wrong, and makes no round trip.
func TestNew_badInput(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	var dials atomic.Int64
	pool := newPool(t, dsn, func(c *pgxpool.Config) {
		var d net.Dialer
		c.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}
	})
	tests := []struct {
		name string
		job  *periodic.Job
		want string // in the message
		// lockOnly: the calls that take the job's lock report it (an
		// invalid lock option is the Mutex's to report); the others work.
		lockOnly bool
	}{
		{"nil pool", periodic.New(nil, "x", time.Hour), "nil pool", false},
		{"empty name", periodic.New(pool, "", time.Hour), "empty job name", false},
		{"name with NUL", periodic.New(pool, "a\x00b", time.Hour), "NUL", false},
		{"name not UTF-8", periodic.New(pool, "\xff", time.Hour), "UTF-8", false},
		{"name too long", periodic.New(pool, strings.Repeat("n", 1001), time.Hour), "at most 1000", false},
		{"zero period", periodic.New(pool, "x", 0), "period 0s: not positive", false},
		{"negative period", periodic.New(pool, "x", -time.Second), "not positive", false},
		{"negative spacing", periodic.New(pool, "x", time.Hour, periodic.WithMinSpacing(-1)), "WithMinSpacing", false},
		{"negative max run time", periodic.New(pool, "x", time.Hour, periodic.WithMaxRunTime(-1)), "WithMaxRunTime", false},
		{"empty schema", periodic.New(pool, "x", time.Hour, periodic.WithSchema("")), "empty schema", false},
		{"long schema", periodic.New(pool, "x", time.Hour, periodic.WithSchema(strings.Repeat("s", 64))), "PostgreSQL allows 63", false},
		{"empty identity", periodic.New(pool, "x", time.Hour, periodic.WithIdentity("")), "empty identity", false},
		{"identity with newline", periodic.New(pool, "x", time.Hour, periodic.WithIdentity("a\nb")), "control character", false},
		{"shared lock", periodic.New(pool, "x", time.Hour, periodic.WithLockOptions(advisorylock.Shared())), "shared", false},
		{"bad lock option", periodic.New(pool, "x", time.Hour, periodic.WithLockOptions(advisorylock.WithTimeout(-1))), "negative", true},
		{"nil Job", nil, "nil Job", false},
	}
	noop := func(context.Context, periodic.Run) error { return nil }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dials.Load()
			var l *advisorylock.Lock // the calls fail before they look at it
			_, runErr := tt.job.Run(t.Context(), noop)
			tickErr := tt.job.Tick(t.Context(), time.Millisecond, noop)
			_, beginErr := tt.job.Begin(t.Context(), l)
			_, statusErr := tt.job.Status(t.Context())
			calls := map[string]error{"Run": runErr, "Tick": tickErr, "Begin": beginErr, "Status": statusErr}
			if tt.lockOnly {
				if statusErr != nil {
					t.Errorf("Status = %v; want nil", statusErr)
				}
				calls = map[string]error{"Run": runErr, "Tick": tickErr}
			}
			for call, err := range calls {
				if !errors.Is(err, advisorylock.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s = %v; want ErrInvalidArgument saying %q", call, err, tt.want)
				}
				if strings.Count(err.Error(), "advisorylock:") != 1 {
					t.Errorf("%s error %q; want one prefix", call, err)
				}
			}
			if n := dials.Load() - before; n != 0 && !tt.lockOnly {
				t.Errorf("%d connections dialled; want none", n)
			}
		})
	}
}

func TestCalls_badInput(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	job := periodic.New(pool, "x", time.Hour)
	noop := func(context.Context, periodic.Run) error { return nil }
	for name, err := range map[string]error{
		"Run(nil fn)":         second(job.Run(t.Context(), nil)),
		"Tick(nil fn)":        job.Tick(t.Context(), time.Second, nil),
		"Tick(every 0)":       job.Tick(t.Context(), 0, noop),
		"Tick(every -1s)":     job.Tick(t.Context(), -time.Second, noop),
		"Begin(nil lock)":     second(job.Begin(t.Context(), nil)),
		"(*Claim)(nil).End()": (*periodic.Claim)(nil).End(t.Context(), nil),
	} {
		if !errors.Is(err, advisorylock.ErrInvalidArgument) {
			t.Errorf("%s = %v; want ErrInvalidArgument", name, err)
		}
	}
	if s := mustStatus(t, job); s.Last.Token != 0 || s.Held {
		t.Errorf("status = %+v; want nothing run, nothing held", s)
	}
}

func second[A, B any](_ A, b B) B { return b }
