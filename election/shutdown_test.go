package election_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
)

// cancelOnGrant is a hook that cancels a context the moment the election
// lock is granted, before Campaign returns: the grant lands exactly as the
// candidate's context ends, as when a SIGTERM arrives while a waiting
// candidate is being elected.
type cancelOnGrant struct {
	cancel context.CancelFunc
	grants atomic.Int32
}

func (h *cancelOnGrant) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	return ctx
}

func (h *cancelOnGrant) AcquireEnd(_ context.Context, _ *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	if data.Outcome == advisorylock.OutcomeAcquired {
		h.grants.Add(1)
		h.cancel()
	}
}

// TestRun_grantAsContextEnds: Run never calls fn once its context is done,
// even when the grant arrives as it ends; it gives the fresh leadership back
// and returns nil, as it does when ctx ends.
func TestRun_grantAsContextEnds(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	for _, waited := range []bool{false, true} {
		name := fmt.Sprintf("grant-as-ctx-ends-waited-%v", waited)
		t.Run(fmt.Sprintf("waited=%v", waited), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			hook := &cancelOnGrant{cancel: cancel}
			a := newElection(t, newPool(t, dsn), name, election.WithIdentity("a"), election.WithHooks(hook))
			var other *election.Leadership
			if waited {
				// Another candidate leads first, so that a's grant comes
				// out of the server's queue when that one resigns.
				other = mustCampaign(t, newElection(t, newPool(t, dsn), name, election.WithIdentity("b")))
			}
			var calls atomic.Int32
			done := make(chan error, 1)
			go func() {
				done <- a.Run(ctx, func(context.Context) error {
					calls.Add(1)
					return nil
				})
			}()
			if waited {
				awaitWaiters(t, admin, 1)
				if err := other.Resign(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if err := await(t, done, awaitTimeout, "Run's return"); err != nil {
				t.Errorf("Run: %v; want nil (its context ended)", err)
			}
			if n := hook.grants.Load(); n != 1 {
				t.Fatalf("the election lock was granted %d times; want 1", n)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("fn called %d times after Run's context was cancelled; want 0", n)
			}
			awaitHolders(t, admin, 0)
			if c, ok := mustLeader(t, a); ok {
				t.Errorf("Leader after Run returned: %+v; want nobody", c)
			}
			// The leadership given back was confirmed released: the
			// candidate campaigns again at once.
			if err := mustCampaign(t, a).Resign(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCampaign_grantAsContextEnds: a grant that arrives as Campaign's context
// ends is given back; Campaign reports the context's error.
func TestCampaign_grantAsContextEnds(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	hook := &cancelOnGrant{cancel: cancel}
	a := newElection(t, newPool(t, dsn), "campaign-grant", election.WithIdentity("a"), election.WithHooks(hook))
	ld, err := a.Campaign(ctx)
	if n := hook.grants.Load(); n != 1 {
		t.Fatalf("the election lock was granted %d times; want 1", n)
	}
	if ld != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Campaign whose context ended with the grant: %v, %v; want nil, context.Canceled", ld, err)
	}
	const want = `advisorylock: campaign election "campaign-grant": context canceled`
	if err.Error() != want {
		t.Errorf("error text %q; want %q", err, want)
	}
	awaitHolders(t, admin, 0)
	if err := mustCampaign(t, a).Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestRun_shutdownStress is the user's report: three candidates get SIGTERM
// at once (their contexts end together) while one leads and two wait. The
// leader steps down, and the lock passes to the waiters just as their
// contexts end: none of them may start leading. Several rounds, so that the
// race between the hand-over and the waiters' cancellation goes both ways.
func TestRun_shutdownStress(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	const candidates, rounds = 3, 10
	es := make([]*election.Election, candidates)
	for i := range es {
		es[i] = newElection(t, newPool(t, dsn), "shutdown",
			election.WithIdentity(fmt.Sprintf("candidate-%d", i)), election.WithRetryDelay(0))
	}
	var late atomic.Int32 // fn calls that started with their context done
	for round := range rounds {
		sigterm, send := context.WithCancel(t.Context())
		started := make(chan struct{}, candidates)
		errs := make(chan error, candidates)
		var starts atomic.Int32
		for _, e := range es {
			// Each candidate's own context, as signal.NotifyContext makes
			// one per process; the signal reaches all at once.
			ctx, stop := context.WithCancel(sigterm)
			go func() {
				defer stop()
				errs <- e.Run(ctx, func(ctx context.Context) error {
					starts.Add(1)
					if ctx.Err() != nil {
						late.Add(1)
						t.Errorf("round %d: %s started leading with its context done: %v", round, e.Identity(), ctx.Err())
					}
					started <- struct{}{}
					<-ctx.Done()
					return nil
				})
			}()
		}
		await(t, started, awaitTimeout, "the first leader")
		awaitWaiters(t, admin, candidates-1)
		send()
		for range candidates {
			if err := await(t, errs, awaitTimeout, "Run's return"); err != nil {
				t.Errorf("round %d: Run: %v; want nil", round, err)
			}
		}
		if n := starts.Load(); n != 1 {
			t.Errorf("round %d: %d terms; want 1, the leader's before the signal", round, n)
		}
		awaitHolders(t, admin, 0)
	}
	t.Logf("%d rounds; %d terms started after the signal", rounds, late.Load())
}
