package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/election"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// awaitTimeout bounds every wait of a test for something to happen.
const awaitTimeout = 10 * time.Second

// testDB creates a database of the test's own (advisory locks are per
// database, so tests cannot see each other's locks, and may run in parallel)
// and checks, when the test ends, that no session holds or awaits an advisory
// lock in it.
func testDB(t *testing.T) string {
	t.Helper()
	dsn := pgtest.Require(t).CreateDatabase(t)
	t.Cleanup(func() { pgtest.AwaitAdvisoryLocks(t, dsn, "true", 0) })
	return dsn
}

// newPool returns a pool on dsn, checked when the test ends: see
// pgtest.NewPool.
func newPool(t *testing.T, dsn string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t, dsn, configure...)
}

// newElection returns a candidate that is closed, with a fresh context, when
// the test ends; closing must confirm the release.
func newElection(t *testing.T, pool *pgxpool.Pool, name string, opts ...election.Option) *election.Election {
	t.Helper()
	e := election.New(pool, name, opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), awaitTimeout)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("closing %v: %v", e, err)
		}
	})
	return e
}

type campaignResult struct {
	ld  *election.Leadership
	err error
	at  time.Time
}

// campaignAsync campaigns in a goroutine of its own.
func campaignAsync(ctx context.Context, e *election.Election) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		ld, err := e.Campaign(ctx)
		ch <- campaignResult{ld, err, time.Now()}
	}()
	return ch
}

// await receives from ch, or fails t after d.
func await[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing after %v", what, d)
		panic("unreachable")
	}
}

// mustCampaign campaigns and fails t unless the candidate wins.
func mustCampaign(t *testing.T, e *election.Election) *election.Leadership {
	t.Helper()
	ld, err := e.Campaign(t.Context())
	if err != nil {
		t.Fatalf("%v: Campaign: %v", e, err)
	}
	return ld
}

// mustLeader returns who leads, failing t on error.
func mustLeader(t *testing.T, e *election.Election) (election.Candidate, bool) {
	t.Helper()
	c, ok, err := e.Leader(t.Context())
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	return c, ok
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// awaitWaiters waits until n sessions of pool's database wait for an
// advisory lock, or fails t after 10s.
func awaitWaiters(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	awaitLocks(t, pool, "not granted", n)
}

// awaitHolders waits until n advisory locks of pool's database are granted,
// or fails t after 10s.
func awaitHolders(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	awaitLocks(t, pool, "granted", n)
}

func awaitLocks(t *testing.T, pool *pgxpool.Pool, cond string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), awaitTimeout)
	defer cancel()
	if got, err := pgtest.WaitAdvisoryLocks(ctx, pool, cond, n); err != nil {
		t.Fatalf("advisory locks where %s: got %d; want %d: %v", cond, got, n, err)
	}
}

// awaitListeners waits until n sessions of pool's database listen on an
// election's channel, or fails t after 10s.
func awaitListeners(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), awaitTimeout)
	defer cancel()
	for {
		var got int
		err := pool.QueryRow(ctx, `select count(*) from pg_stat_activity
			where datname = current_database() and pid <> pg_backend_pid() and query like '%listen "advisorylock.election.%'`).Scan(&got)
		if err != nil {
			t.Fatalf("awaiting %d listeners: %v", n, err)
		}
		if got == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("listeners: got %d; want %d", got, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// newProxy returns a proxy in front of the test server, closed when the test
// ends.
func newProxy(t *testing.T) *pgtest.Proxy {
	t.Helper()
	return pgtest.Require(t).Proxy(t)
}
