package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestElection_pooler: an Election holds its leadership in a session lock, so
// behind transaction pooling Campaign is refused with ErrPooler, and Run
// returns it at once rather than campaigning again forever.
func TestElection_pooler(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	bouncer := pgtest.Require(t).PgBouncer(t, dsn)
	e := newElection(t, newPool(t, bouncer), "pooler-election", election.WithRetryDelay(10*time.Millisecond))
	if _, err := e.Campaign(t.Context()); !errors.Is(err, advisorylock.ErrPooler) {
		t.Fatalf("Campaign through PgBouncer: got %v; want ErrPooler", err)
	}
	const patience = 2 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	led := false
	err := e.Run(ctx, func(context.Context) error {
		led = true
		return nil
	})
	if led {
		t.Error("Run led through PgBouncer")
	}
	if !errors.Is(err, advisorylock.ErrPooler) || ctx.Err() != nil {
		t.Errorf("Run through PgBouncer: got %v after %v of retrying; want ErrPooler at once", err, patience)
	}
}
