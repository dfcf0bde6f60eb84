package election_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// badEnv is what the cases of the bad-input tables work with.
type badEnv struct {
	dsn  string
	pool *pgxpool.Pool // the subject's pool
	// dials counts the connections dialled from pool's configuration,
	// which the Elections' own pools copy: it tells whether a call made a
	// round trip.
	dials *atomic.Int64
}

// callResult is the error one entry point returned.
type callResult struct {
	call string
	err  error
}

// badCase is one row of a bad-input table: run calls one or more entry
// points and returns their errors, each of which must match every error in
// want (with errors.Is), or be nil when want is empty, and have the text msg
// gives for its call, when msg is set and gives one. run may check more
// itself. A panic out of run fails the case.
type badCase struct {
	name string
	run  func(t *testing.T, e *badEnv) []callResult
	want []error
	msg  func(call string) string
	// noIO: the calls must fail before any round trip (no connection is
	// dialled).
	noIO bool
}

// runBadCases runs cases as subtests, one after the other, on a database of
// t's own.
func runBadCases(t *testing.T, cases []badCase) {
	t.Helper()
	e := &badEnv{dsn: testDB(t), dials: new(atomic.Int64)}
	e.pool = newPool(t, e.dsn, countDials(e.dials))
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// Registered first, so it runs after the case's own cleanups,
			// such as closing its Elections.
			t.Cleanup(func() {
				pgtest.AssertPoolClean(t, e.pool)
				pgtest.AwaitAdvisoryLocks(t, e.dsn, "true", 0)
			})
			before := e.dials.Load()
			var rs []callResult
			if r := recoverFrom(func() { rs = tt.run(t, e) }); r != nil {
				t.Fatalf("panicked: %v", r)
			}
			if len(rs) == 0 && !t.Failed() {
				t.Fatal("the case checked nothing")
			}
			for _, r := range rs {
				switch {
				case len(tt.want) == 0 && r.err != nil:
					t.Errorf("%s: %v; want no error", r.call, r.err)
				case len(tt.want) > 0 && r.err == nil:
					t.Errorf("%s: no error; want %v", r.call, tt.want)
				}
				for _, w := range tt.want {
					if r.err != nil && !errors.Is(r.err, w) {
						t.Errorf("%s: %v; want an error matching %v", r.call, r.err, w)
					}
				}
				if tt.msg == nil || r.err == nil {
					continue
				}
				if want := tt.msg(r.call); want != "" && r.err.Error() != want {
					t.Errorf("%s: error text\n\t%q\nwant\n\t%q", r.call, r.err, want)
				}
			}
			if n := e.dials.Load() - before; tt.noIO && n != 0 {
				t.Errorf("%d connections dialled; want none (no round trip for bad input)", n)
			}
		})
	}
	t.Logf("%d cases", len(cases))
}

// countDials counts in n the connections a pool's configuration dials.
func countDials(n *atomic.Int64) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		var d net.Dialer
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			n.Add(1)
			return d.DialContext(ctx, network, addr)
		}
	}
}

// recoverFrom runs f and returns what it panicked with, or nil.
func recoverFrom(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}

// ops are the operations errors name, by the call of electionCalls.
var ops = map[string]string{"Campaign": "campaign", "Leader": "leader", "Observe": "observe", "Run": "run"}

// electionCalls runs each entry point of an Election once with ctx.
func electionCalls(ctx context.Context, el *election.Election) []callResult {
	ld, err := el.Campaign(ctx)
	if ld != nil {
		_ = ld.Resign(context.Background())
	}
	rs := []callResult{{"Campaign", err}}
	_, _, err = el.Leader(ctx)
	rs = append(rs, callResult{"Leader", err})
	ch, err := el.Observe(ctx)
	if ch != nil {
		go func() {
			for range ch {
			}
		}()
	}
	rs = append(rs, callResult{"Observe", err})
	err = el.Run(ctx, func(context.Context) error { return errors.New("fn ran") })
	return append(rs, callResult{"Run", err})
}

// TestNew_badInput gives New bad arguments and options: every entry point
// of the Election then fails with an error matching ErrInvalidArgument,
// naming the call, the election and what was wrong, before any round trip.
// Close on such an Election returns nil.
func TestNew_badInput(t *testing.T) {
	t.Parallel()
	hugeName := strings.Repeat("h", 1<<20)
	pool := func(e *badEnv) *pgxpool.Pool { return e.pool }
	noPool := func(*badEnv) *pgxpool.Pool { return nil }
	bad := func(name string, pool func(e *badEnv) *pgxpool.Pool, ename, what string, opts ...election.Option) badCase {
		return badCase{name: name, want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			msg: func(call string) string {
				return fmt.Sprintf("advisorylock: %s election %q: invalid argument: %s", ops[call], ename, what)
			},
			run: func(t *testing.T, e *badEnv) []callResult {
				el := election.New(pool(e), ename, opts...)
				rs := electionCalls(t.Context(), el)
				for range 2 {
					if err := el.Close(t.Context()); err != nil {
						t.Errorf("Close = %v; want nil (nothing to release)", err)
					}
				}
				return rs
			}}
	}
	const maxLease = "596h31m23.647s" // 2^31-1 ms, the server's idle_session_timeout at most
	cases := []badCase{
		bad("nil pool", noPool, "x", "nil pool"),
		bad("empty name", pool, "", "empty election name"),
		bad("nil pool, empty name, bad option: the option is reported", noPool, "",
			"WithLease(-1ns): negative duration", election.WithLease(-1)),
		bad("WithIdentity: empty", pool, "x", "identity of 0 bytes; want 1 to 63", election.WithIdentity("")),
		bad("WithIdentity: 64 bytes", pool, "x", "identity of 64 bytes; want 1 to 63", election.WithIdentity(strings.Repeat("i", 64))),
		bad("WithIdentity: 1 MiB", pool, "x", "identity of 1048576 bytes; want 1 to 63", election.WithIdentity(hugeName)),
		bad("WithIdentity: NUL byte", pool, "x", "identity: byte 1 (0x0) is not printable ASCII", election.WithIdentity("a\x00b")),
		bad("WithIdentity: newline", pool, "x", "identity: byte 1 (0xa) is not printable ASCII", election.WithIdentity("a\nb")),
		bad("WithIdentity: DEL", pool, "x", "identity: byte 1 (0x7f) is not printable ASCII", election.WithIdentity("a\x7f")),
		bad("WithIdentity: non-ASCII", pool, "x", "identity: byte 1 (0xc3) is not printable ASCII", election.WithIdentity("zürich-1")),
		bad("WithIdentity: invalid UTF-8", pool, "x", "identity: byte 0 (0xff) is not printable ASCII", election.WithIdentity("\xff")),
		bad("WithLease(-1ns)", pool, "x", "WithLease(-1ns): negative duration", election.WithLease(-1)),
		bad("WithLease(-1s)", pool, "x", "WithLease(-1s): negative duration", election.WithLease(-time.Second)),
		bad("WithLease(math.MinInt64)", pool, "x", "WithLease(-2562047h47m16.854775808s): negative duration", election.WithLease(math.MinInt64)),
		bad("WithLease(1ns): below the shortest lease", pool, "x", "WithLease(1ns): below 100ms", election.WithLease(1)),
		bad("WithLease(1ms): below the shortest lease", pool, "x", "WithLease(1ms): below 100ms", election.WithLease(time.Millisecond)),
		// A lease shorter than the time a new leader needs to send its first
		// keepalive probe would end every leadership at once: refused.
		bad("WithLease(99ms): below the shortest lease", pool, "x", "WithLease(99ms): below 100ms", election.WithLease(99*time.Millisecond)),
		// The lease becomes the session's idle_session_timeout, an int4 of
		// milliseconds (about 24.8 days at most): longer ones are refused.
		bad("WithLease(30 days): beyond idle_session_timeout", pool, "x",
			"WithLease(720h0m0s): above "+maxLease+" (the server's idle_session_timeout)", election.WithLease(30*24*time.Hour)),
		bad("WithLease(math.MaxInt64)", pool, "x",
			"WithLease(2562047h47m16.854775807s): above "+maxLease+" (the server's idle_session_timeout)", election.WithLease(math.MaxInt64)),
		bad("WithRetryDelay(-1ns)", pool, "x", "WithRetryDelay(-1ns): negative duration", election.WithRetryDelay(-1)),
		bad("WithPollInterval(0)", pool, "x", "WithPollInterval(0s): not positive", election.WithPollInterval(0)),
		bad("WithPollInterval(-1s)", pool, "x", "WithPollInterval(-1s): not positive", election.WithPollInterval(-time.Second)),
		bad("a bad option is not undone by a later good one", pool, "x", "WithRetryDelay(-1ns): negative duration",
			election.WithRetryDelay(-1), election.WithRetryDelay(time.Second)),
		bad("the first bad option is reported", pool, "x", "WithPollInterval(0s): not positive",
			election.WithPollInterval(0), election.WithIdentity("")),
	}
	runBadCases(t, cases)
}

// TestElection_badCalls calls the entry points in ways they refuse or must
// survive: nil receivers and functions, done contexts, a second campaign,
// use after Close, options and names at the edges. Each returns a typed error
// (or does what its documentation says), never panics, and leaves no lock
// held and no connection acquired.
func TestElection_badCalls(t *testing.T) {
	t.Parallel()
	hugeName := strings.Repeat("h", 1<<20)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	// campaignResign campaigns, checks that Leader sees the candidate, and
	// resigns.
	campaignResign := func(t *testing.T, el *election.Election) []callResult {
		ld, err := el.Campaign(t.Context())
		if err != nil {
			return []callResult{{"Campaign", err}}
		}
		c, ok, err := el.Leader(t.Context())
		if err == nil && (!ok || c.Identity != el.Identity() || c != ld.Candidate()) {
			t.Errorf("Leader = %+v, %v; want %+v", c, ok, ld.Candidate())
		}
		return []callResult{{"Leader", err}, {"Resign", ld.Resign(t.Context())}}
	}
	cases := []badCase{
		{name: "nil *Election", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			msg: func(call string) string { return "advisorylock: " + ops[call] + ": invalid argument: nil Election" },
			run: func(t *testing.T, e *badEnv) []callResult {
				var el *election.Election
				if err := el.Close(t.Context()); err != nil {
					t.Errorf("Close on a nil Election = %v; want nil", err)
				}
				return electionCalls(t.Context(), el)
			}},
		{name: "Run: nil fn", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			msg: func(string) string { return `advisorylock: run election "x": invalid argument: nil function` },
			run: func(t *testing.T, e *badEnv) []callResult {
				return []callResult{{"Run", newElection(t, e.pool, "x").Run(t.Context(), nil)}}
			}},
		{name: "Resign on a nil *Leadership", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			msg: func(string) string { return "advisorylock: resign: invalid argument: nil Leadership" },
			run: func(t *testing.T, e *badEnv) []callResult {
				var ld *election.Leadership
				return []callResult{{"Resign", ld.Resign(t.Context())}}
			}},
		{name: "options at the edges: nil, zero lease, zero retry delay, 1ns poll interval, 63-byte identity, nil hook",
			run: func(t *testing.T, e *badEnv) []callResult {
				id := strings.Repeat("~", 63)
				el := newElection(t, e.pool, "x", nil, election.WithLease(0), election.WithRetryDelay(0),
					election.WithPollInterval(1), election.WithIdentity(id), election.WithHooks(nil))
				if el.Identity() != id {
					t.Errorf("Identity() = %q; want %q", el.Identity(), id)
				}
				return campaignResign(t, el)
			}},
		{name: "WithLease(250ms): short, and kept",
			run: func(t *testing.T, e *badEnv) []callResult {
				// 250ms: the probe's bound is two thirds of the lease, which a
				// shorter lease would make a test of the machine's load.
				el := newElection(t, e.pool, "x", election.WithLease(250*time.Millisecond))
				ld, err := el.Campaign(t.Context())
				if err != nil {
					return []callResult{{"Campaign", err}}
				}
				// Three leases pass: that is what is tested, not a wait
				// for something to happen.
				time.Sleep(750 * time.Millisecond)
				rs := []callResult{{"Err after 3 leases", ld.Err()}}
				return append(rs, callResult{"Resign", ld.Resign(t.Context())})
			}},
		{name: "cancelled context", want: []error{context.Canceled}, noIO: true,
			msg: func(call string) string {
				return fmt.Sprintf(`advisorylock: %s election "x": context canceled`, ops[call])
			},
			run: func(t *testing.T, e *badEnv) []callResult {
				el := newElection(t, e.pool, "x")
				_, err := el.Campaign(cancelled)
				rs := []callResult{{"Campaign", err}}
				_, _, err = el.Leader(cancelled)
				rs = append(rs, callResult{"Leader", err})
				if err := el.Run(cancelled, func(context.Context) error { return errors.New("fn ran") }); err != nil {
					t.Errorf("Run with a cancelled context = %v; want nil (documented: nil when ctx is done)", err)
				}
				ch, err := el.Observe(cancelled)
				if err != nil {
					t.Errorf("Observe with a cancelled context = %v; want a channel that closes", err)
				} else {
					timeout := time.After(awaitTimeout)
					for open := true; open; {
						select {
						case _, open = <-ch:
						case <-timeout:
							t.Fatal("Observe's channel still open 10s after its context was cancelled")
						}
					}
				}
				return rs
			}},
		{name: "Campaign and Run while leading", want: []error{election.ErrCampaigning},
			msg: func(string) string { return `advisorylock: campaign election "x": already campaigning or leading` },
			run: func(t *testing.T, e *badEnv) []callResult {
				el := newElection(t, e.pool, "x")
				ld := mustCampaign(t, el)
				defer ld.Resign(context.Background())
				_, err := el.Campaign(t.Context())
				return []callResult{{"Campaign", err}, {"Run", el.Run(t.Context(), func(context.Context) error { return nil })}}
			}},
		{name: "every call after Close", want: []error{election.ErrClosed}, noIO: true,
			msg: func(call string) string {
				return fmt.Sprintf(`advisorylock: %s election "x": election closed`, ops[call])
			},
			run: func(t *testing.T, e *badEnv) []callResult {
				el := newElection(t, e.pool, "x")
				if err := el.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := el.Close(t.Context()); err != nil {
					t.Errorf("second Close = %v; want nil", err)
				}
				return electionCalls(t.Context(), el)
			}},
		{name: "Resign twice, and after Close",
			run: func(t *testing.T, e *badEnv) []callResult {
				el := newElection(t, e.pool, "x")
				ld := mustCampaign(t, el)
				rs := []callResult{{"Resign", ld.Resign(t.Context())}, {"Resign again", ld.Resign(t.Context())}}
				if !errors.Is(ld.Err(), advisorylock.ErrNotHeld) {
					t.Errorf("Err() after Resign = %v; want ErrNotHeld", ld.Err())
				}
				rs = append(rs, callResult{"Close", el.Close(t.Context())})
				return append(rs, callResult{"Resign after Close", ld.Resign(t.Context())})
			}},
		{name: "Close with a cancelled context while leading", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				el := election.New(e.pool, "x")
				ld := mustCampaign(t, el)
				err := el.Close(cancelled)
				if !isClosed(ld.Done()) {
					t.Error("the leadership is not over after Close")
				}
				// The session was closed, which releases the lock; the case's
				// check awaits its release in the server.
				return []callResult{{"Close", err}, {"Close again", el.Close(t.Context())}}
			}},
		{name: "election names: 1 MiB, NUL, invalid UTF-8",
			run: func(t *testing.T, e *badEnv) []callResult {
				var rs []callResult
				for _, name := range []string{hugeName, "a\x00b", "\xff"} {
					el := newElection(t, e.pool, name)
					// The election lock is the Mutex of the same name.
					if want := advisorylock.New(e.pool, name).Key(); el.Key() != want {
						t.Errorf("Key() = %v; want %v, the Mutex's", el.Key(), want)
					}
					rs = append(rs, campaignResign(t, el)...)
				}
				return rs
			}},
	}
	runBadCases(t, cases)
}
