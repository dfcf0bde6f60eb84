package election_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
)

// checkErrorShape fails t unless err is an *advisorylock.Error of op on the
// election called name, matching want, whose text starts with
// "advisorylock: <op> election "<name>": <prefix>" and says "advisorylock:"
// once.
func checkErrorShape(t *testing.T, err error, op, name string, want error, prefix string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%v; want an error matching %v", err, want)
	}
	var aerr *advisorylock.Error
	if !errors.As(err, &aerr) {
		t.Fatalf("%v (%T); want an *advisorylock.Error", err, err)
	}
	if wantLock := `election "` + name + `"`; aerr.Op != op || aerr.Lock != wantLock {
		t.Errorf("Op %q, Lock %q; want %q, %q", aerr.Op, aerr.Lock, op, wantLock)
	}
	msg := err.Error()
	if head := `advisorylock: ` + op + ` election "` + name + `": ` + prefix; !strings.HasPrefix(msg, head) {
		t.Errorf("error text %q; want it to start with %q", msg, head)
	}
	if n := strings.Count(msg, "advisorylock:"); n != 1 {
		t.Errorf("error text %q says \"advisorylock:\" %d times; want once", msg, n)
	}
	if strings.Contains(msg, `lock "`+name+`"`) {
		t.Errorf("error text %q names the election lock; want the election", msg)
	}
}

// TestCampaign_errorText: a Campaign that times out or is cancelled is
// reported as the election's (op "campaign"), not as its lock's, with one
// prefix, and matches the context's error.
func TestCampaign_errorText(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	const name = "timeout"
	a := newElection(t, newPool(t, dsn), name, election.WithIdentity("a"))
	b := newElection(t, newPool(t, dsn), name, election.WithIdentity("b"))
	la := mustCampaign(t, a)
	defer la.Resign(context.Background())

	t.Run("deadline while waiting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := b.Campaign(ctx)
		t.Logf("%v", err)
		checkErrorShape(t, err, "campaign", name, context.DeadlineExceeded, "context deadline exceeded")
	})
	t.Run("deadline passed", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		_, err := b.Campaign(ctx)
		if want := `advisorylock: campaign election "timeout": context deadline exceeded`; err == nil || err.Error() != want {
			t.Errorf("Campaign past its deadline: %v; want %q", err, want)
		}
		checkErrorShape(t, err, "campaign", name, context.DeadlineExceeded, "context deadline exceeded")
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		waiting := campaignAsync(ctx, b)
		awaitWaiters(t, admin, 1)
		cancel()
		r := await(t, waiting, awaitTimeout, "cancelled campaign")
		t.Logf("%v", r.err)
		checkErrorShape(t, r.err, "campaign", name, context.Canceled, "context canceled")
	})
	awaitWaiters(t, admin, 0)
}

// TestResign_errorText: a Resign that cannot confirm the release is reported
// as the election's (op "resign"), with one prefix, and matches the context's
// error; so is the campaign that Close ends.
func TestResign_errorText(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	const name = "resign-text"
	a := newElection(t, newPool(t, dsn), name, election.WithIdentity("a"))
	la := mustCampaign(t, a)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := la.Resign(ctx)
	t.Logf("%v", err)
	// The unlock's own words come first: the driver's, from Lock.Unlock.
	checkErrorShape(t, err, "resign", name, context.Canceled, "")
	if err := la.Resign(t.Context()); err != nil {
		t.Fatalf("Resign retried: %v", err)
	}

	b := newElection(t, newPool(t, dsn), name, election.WithIdentity("b"))
	lb := mustCampaign(t, b)
	waiting := campaignAsync(t.Context(), a)
	awaitWaiters(t, admin, 1)
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := await(t, waiting, awaitTimeout, "the campaign Close ended")
	if want := `advisorylock: campaign election "resign-text": election closed`; r.err == nil || r.err.Error() != want {
		t.Errorf("campaign ended by Close: %v; want %q", r.err, want)
	}
	checkErrorShape(t, r.err, "campaign", name, election.ErrClosed, "election closed")
	if err := lb.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}
