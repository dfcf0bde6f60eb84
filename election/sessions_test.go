package election_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/election"
)

// sessionsOf counts the server sessions whose application_name is one of ids.
func sessionsOf(t *testing.T, admin *pgxpool.Pool, ids []string) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(t.Context(), `select count(*) from pg_stat_activity
		where datname = current_database() and application_name = any($1)`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Three candidates, each with a pool of its own as three processes would
// have, campaigning and not observing, use one server session each once the
// election has settled: the leader's lock session, and each follower's wait.
// An observer adds its LISTEN session.
func TestElection_oneSessionPerCandidate(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ids []string
	var candidates []*election.Election
	for i := range 3 {
		id := fmt.Sprint("sessions-", i)
		ids = append(ids, id)
		e := newElection(t, newPool(t, dsn), "sessions", election.WithIdentity(id))
		candidates = append(candidates, e)
		go func() { _ = e.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }) }()
	}
	awaitHolders(t, admin, 1)
	awaitWaiters(t, admin, 2)
	// Short-lived connections (a leader's announcement) close once idle.
	deadline := time.Now().Add(awaitTimeout)
	n := sessionsOf(t, admin, ids)
	for n > 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = sessionsOf(t, admin, ids)
	}
	t.Logf("3 candidates campaigning: %d server sessions", n)
	if n > 3 {
		t.Errorf("3 candidates use %d server sessions; want 3", n)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	ch, err := candidates[0].Observe(octx)
	if err != nil {
		t.Fatal(err)
	}
	<-ch // the leader as of now
	awaitListeners(t, admin, 1)
	deadline = time.Now().Add(awaitTimeout)
	n = sessionsOf(t, admin, ids)
	for n > 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = sessionsOf(t, admin, ids)
	}
	t.Logf("with one observer: %d server sessions", n)
	if n > 4 {
		t.Errorf("3 candidates and an observer use %d server sessions; want 4", n)
	}
	ocancel()
	cancel()
}
