package advisorylock_test

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// A failover: a hot standby is promoted and the old primary stopped. Every
// holder on the old primary is told its lock is lost; a waiter whose pool
// names both servers (target_session_attrs=read-write) waits again, on the new
// primary, and gets the lock there; and the locks of the old primary are free
// on the new one, since advisory locks are never replicated.
func TestLock_failover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	primary := pgtest.StartPrivate(t)
	standby, err := primary.StartStandby(ctx)
	if err != nil {
		t.Fatalf("starting a standby: %v", err)
	}
	t.Cleanup(func() { _ = standby.Stop() })
	both, err := url.Parse(primary.DSN())
	if err != nil {
		t.Fatal(err)
	}
	both.Host += "," + net.JoinHostPort(standby.Host(), strconv.Itoa(standby.Port()))
	both.RawQuery += "&target_session_attrs=read-write"

	old := plainPool(t, primary.DSN())
	var holders []*advisorylock.Lock
	var waits []<-chan lockResult
	var recs []*hookRecorder
	for _, p := range waitPlaces {
		l, err := advisorylock.New(old, "failover-"+p.label, p.opt).Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, l)
		t.Cleanup(func() { _ = l.Unlock(ctx) })
		rec := newHookRecorder("r")
		recs = append(recs, rec)
		waits = append(waits, lockAsync(ctx, advisorylock.New(plainPool(t, both.String()), "failover-"+p.label, p.opt,
			advisorylock.WithHooks(rec), advisorylock.WithTimeout(time.Minute))))
	}
	pgtest.AwaitWaiters(t, old, len(waitPlaces))

	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, l := range holders {
		if l.Tx() == nil {
			// A session lock is watched; a transaction's loss shows at
			// its next statement, or its release.
			took := awaitDone(t, l, start, 10*time.Second)
			t.Logf("%s holder told %v after the old primary stopped", waitPlaces[i].label, took.Round(time.Millisecond))
		}
		if err := l.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
			t.Errorf("%s holder's Unlock after the failover = %v; want ErrLockLost", waitPlaces[i].label, err)
		}
	}

	newPrimary := pgtest.NewPool(t, standby.DSN())
	for i, w := range waits {
		label := waitPlaces[i].label
		r := <-w
		if r.err != nil {
			t.Errorf("%s waiter across the failover = %v; want the lock on the new primary", label, r.err)
			continue
		}
		if got := pgtest.AdvisoryLockPIDs(t, newPrimary, "granted"); !slices.Contains(got, r.l.PID()) {
			t.Errorf("%s waiter holds the lock as session %d; the new primary's holders are %v", label, r.l.PID(), got)
		}
		if len(recs[i].log.only("AcquireRetry")) == 0 {
			t.Errorf("%s waiter: no AcquireRetry; want it to have said it waits again", label)
		}
		if err := r.l.Unlock(ctx); err != nil {
			t.Error(err)
		}
	}
	// New holders, on a pool of the new primary alone, take each lock the old
	// primary's holders had.
	for _, p := range waitPlaces {
		l, err := advisorylock.New(newPrimary, "failover-"+p.label, p.opt, advisorylock.WithTimeout(10*time.Second)).Lock(ctx)
		if err != nil {
			t.Errorf("%s lock on the new primary = %v; want it", p.label, err)
			continue
		}
		if err := l.Unlock(ctx); err != nil {
			t.Error(err)
		}
	}
}
