package semaphore_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// Holders lists the slots' holders by slot, then the waiters, the head of the
// queue first, with their sessions' process ids and application names.
func TestHolders(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	named := func(app string) *pgxpool.Pool {
		return newPool(t, dsn, func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["application_name"] = app })
	}
	s := semaphore.New(admin, "holders", 2)
	if hs, err := s.Holders(t.Context()); err != nil || len(hs) != 0 {
		t.Fatalf("Holders of a free semaphore = %v, %v; want none", hs, err)
	}
	sa, sb := semaphore.New(named("holder-a"), "holders", 2), semaphore.New(named("holder-b"), "holders", 2)
	a, b := mustLock(t, sa), mustLock(t, sb)
	lockAsync(t, t.Context(), semaphore.New(named("waiter-1"), "holders", 2))
	awaitQueued(t, admin, s, 1)
	lockAsync(t, t.Context(), semaphore.New(named("waiter-2"), "holders", 2))
	awaitQueued(t, admin, s, 2)
	hs, err := s.Holders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		app     string
		slot    int
		granted bool
		pid     int32
	}
	want := []row{{"holder-a", sa.Slot(a), true, a.PID()}, {"holder-b", sb.Slot(b), true, b.PID()}, {"waiter-1", -1, false, 0}, {"waiter-2", -1, false, 0}}
	if want[0].slot > want[1].slot {
		want[0], want[1] = want[1], want[0]
	}
	if len(hs) != len(want) {
		t.Fatalf("Holders = %+v; want %d rows", hs, len(want))
	}
	for i, h := range hs {
		w := want[i]
		if h.ApplicationName != w.app || h.Slot != w.slot || h.Granted != w.granted || (w.pid != 0 && h.PID != w.pid) {
			t.Errorf("row %d = %s slot %d granted %v pid %d; want %+v", i, h.ApplicationName, h.Slot, h.Granted, h.PID, w)
		}
		if h.Mode != advisorylock.ModeExclusive || h.Since.IsZero() || time.Since(h.Since) > time.Minute {
			t.Errorf("row %d: mode %v, since %v", i, h.Mode, h.Since)
		}
		wantKey := s.QueueKey()
		if w.slot >= 0 {
			wantKey = s.SlotKey(w.slot)
		}
		if h.Key != wantKey {
			t.Errorf("row %d: key %v; want %v", i, h.Key, wantKey)
		}
	}
}
