package advisorylock_test

import (
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// Tokens after a failover: with synchronous replication (the setting the
// docs name), every token the new primary hands out exceeds every token the
// old one handed out. A fenced Lock returns only after its statement
// committed, and a commit under synchronous replication waits for the
// standby's flush of the sequence's WAL, which PostgreSQL logs ahead of the
// values handed out: so the promoted standby's sequence starts above them.
// More draws than the 32 values a sequence logs ahead make sure the test
// crosses several such records.
func TestFencing_tokensAfterFailover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	primary := pgtest.StartPrivate(t, "synchronous_commit=on", "synchronous_standby_names=*")
	standby, err := primary.StartStandby(ctx)
	if err != nil {
		t.Fatalf("starting a standby: %v", err)
	}
	t.Cleanup(func() { _ = standby.Stop() })
	old := plainPool(t, primary.DSN())
	// Await the standby's place as synchronous: until then a commit waits
	// for it anyway, but the check says the setting took.
	const syncBound = 30 * time.Second
	deadline := time.Now().Add(syncBound)
	for {
		var sync bool
		if err := old.QueryRow(ctx, "select exists (select from pg_stat_replication where sync_state = 'sync')").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if sync {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no synchronous standby after %v", syncBound)
		}
		time.Sleep(20 * time.Millisecond) // polling a catalog view: nothing to wait on
	}

	places := []struct {
		label string
		opts  []advisorylock.Option
	}{
		{"pinned", []advisorylock.Option{advisorylock.PinConnection()}},
		{"lock session", nil},
		{"transaction", []advisorylock.Option{advisorylock.TransactionScope()}},
	}
	var before int64
	for i := range 100 {
		p := places[i%len(places)]
		m := advisorylock.New(old, "failover-token", append(p.opts, advisorylock.WithFencing())...)
		l, err := m.Lock(ctx)
		if err != nil {
			t.Fatalf("%s: %v", p.label, err)
		}
		if l.Token() <= before {
			t.Fatalf("%s: token %d after %d on one server", p.label, l.Token(), before)
		}
		before = l.Token()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}

	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	promoted := plainPool(t, standby.DSN())
	for _, p := range places {
		m := advisorylock.New(promoted, "failover-token", append(p.opts, advisorylock.WithFencing())...)
		l, err := m.Lock(ctx)
		if err != nil {
			t.Fatalf("%s on the new primary: %v", p.label, err)
		}
		if l.Token() <= before {
			t.Errorf("%s on the new primary: token %d; want above %d, the last before the failover", p.label, l.Token(), before)
		}
		t.Logf("%s: token %d after the failover; %d the last before it", p.label, l.Token(), before)
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
