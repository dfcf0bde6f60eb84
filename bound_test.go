package advisorylock_test

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// The server's bound on a silent lock session is the client's (two
// keepalives) plus a margin of one keepalive, at least a second; its settings,
// in the whole seconds PostgreSQL takes, give up no sooner and at most one
// interval later, whether by tcp_user_timeout or by counting probes.
func TestServerKeepalive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		k              time.Duration
		bound          time.Duration
		idle, interval time.Duration
		count          int
		userTimeout    time.Duration
	}{
		{advisorylock.DefaultKeepalive, 9 * time.Second, time.Second, time.Second, 8, 9 * time.Second},
		{time.Second, 3 * time.Second, time.Second, time.Second, 2, 3 * time.Second},
		{250 * time.Millisecond, 1500 * time.Millisecond, time.Second, time.Second, 1, 1500 * time.Millisecond},
		{10 * time.Second, 30 * time.Second, 5 * time.Second, 5 * time.Second, 5, 30 * time.Second},
		{time.Minute, 3 * time.Minute, 30 * time.Second, 30 * time.Second, 5, 3 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.k.String(), func(t *testing.T) {
			if got := advisorylock.ServerBound(tt.k); got != tt.bound {
				t.Errorf("ServerBound(%v) = %v; want %v", tt.k, got, tt.bound)
			}
			idle, interval, count, ut := advisorylock.ServerKeepalive(tt.k)
			if idle != tt.idle || interval != tt.interval || count != tt.count || ut != tt.userTimeout {
				t.Errorf("ServerKeepalive(%v) = %v, %v, %d, %v; want %v, %v, %d, %v",
					tt.k, idle, interval, count, ut, tt.idle, tt.interval, tt.count, tt.userTimeout)
			}
		})
	}
	if got := advisorylock.ServerBound(0); got != 0 {
		t.Errorf("ServerBound(0) = %v; want 0 (no probe, no bound)", got)
	}
	for k := 100 * time.Millisecond; k <= 2*time.Hour; k += k/3 + 7*time.Millisecond {
		b := advisorylock.ServerBound(k)
		if b < 2*k+min(k, time.Second) || b < 2*k+time.Second {
			t.Errorf("ServerBound(%v) = %v; want at least 2×%v plus a margin of max(%v, 1s)", k, b, k, k)
		}
		idle, interval, count, ut := advisorylock.ServerKeepalive(k)
		if idle%time.Second != 0 || interval%time.Second != 0 || idle < time.Second {
			t.Errorf("ServerKeepalive(%v): idle %v, interval %v; want whole seconds, at least 1s", k, idle, interval)
		}
		byCount := idle + time.Duration(count)*interval
		if byCount < b || byCount >= b+interval {
			t.Errorf("ServerKeepalive(%v): probes give up after %v; want in [%v, %v)", k, byCount, b, b+interval)
		}
		if ut < b || ut >= b+time.Millisecond || ut%time.Millisecond != 0 {
			t.Errorf("ServerKeepalive(%v): tcp_user_timeout %v; want %v in whole milliseconds", k, ut, b)
		}
	}
}

// A lock session carries the server's bounds from its first statement; with
// no keepalive it leaves the server's own settings.
func TestSessions_serverBounds(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	names := []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"}
	for _, k := range []time.Duration{advisorylock.DefaultKeepalive, time.Second, 250 * time.Millisecond, 0} {
		t.Run(k.String(), func(t *testing.T) {
			l, err := advisorylock.New(pool, "bounds-"+k.String(),
				advisorylock.WithKeepalive(k)).Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock(t.Context())
			got, err := l.SessionSettings(t.Context(), names...)
			if err != nil {
				t.Fatal(err)
			}
			want := make(map[string]string) // a pooled connection's: the system's
			for _, n := range names {
				var v string
				if err := pool.QueryRow(t.Context(), "select setting from pg_catalog.pg_settings where name = $1", n).Scan(&v); err != nil {
					t.Fatal(err)
				}
				want[n] = v
			}
			if k > 0 {
				idle, interval, count, ut := advisorylock.ServerKeepalive(k)
				want = map[string]string{
					names[0]: strconv.Itoa(int(idle / time.Second)),
					names[1]: strconv.Itoa(int(interval / time.Second)),
					names[2]: strconv.Itoa(count),
					names[3]: strconv.FormatInt(ut.Milliseconds(), 10),
				}
			}
			for _, n := range names {
				if got[n] != want[n] {
					t.Errorf("%s = %q; want %q", n, got[n], want[n])
				}
			}
		})
	}
}

// A holder on a lock session whose network is cut, the server's side too
// (every packet dropped, both ways), is told its lock is lost before anyone
// else gets it, and the server frees the lock within the documented bound:
// ServerBound(k) after it last heard from the holder, and at most one server
// keepalive interval more. With Linux's defaults the server would keep it for
// over two hours.
func TestLost_partitionedLockSession(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool, other, admin := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	ctx := t.Context()
	const k = time.Second
	m := advisorylock.New(pool, "partition", advisorylock.WithKeepalive(k))
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var told atomic.Int64 // when Done closed, in ns since start
	pgtest.Partition(t, admin, l.PID())
	start := time.Now()
	go func() {
		<-l.Done()
		told.Store(int64(time.Since(start)))
	}()
	r := <-lockAsync(ctx, advisorylock.New(other, "partition", advisorylock.WithTimeout(time.Minute)))
	freed := time.Since(start)
	if r.err != nil {
		t.Fatalf("another session, waiting for the partitioned holder's lock: %v", r.err)
	}
	defer r.l.Unlock(ctx)
	select {
	case <-l.Done():
	default:
		t.Fatal("another session got the lock before its partitioned holder was told")
	}
	if err := l.Err(); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("holder's Err = %v; want ErrLockLost", err)
	}
	_, interval, _, _ := advisorylock.ServerKeepalive(k)
	bound := advisorylock.ServerBound(k) + interval
	t.Logf("keepalive %v: holder told %v after the partition began (client bound %v); the server freed the lock after %v (bound %v; Linux defaults: 2h11m)",
		k, time.Duration(told.Load()).Round(time.Millisecond), 2*k, freed.Round(time.Millisecond), bound)
	// Timers of the kernel, not of the loaded client: a few seconds of
	// slack tell the documented bound from the defaults' hours.
	if freed > bound+5*time.Second {
		t.Errorf("the server freed the lock %v after the partition began; want within about %v", freed, bound)
	}
	if err := l.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("holder's Unlock = %v; want ErrLockLost", err)
	}
}

// A wait on a lock session whose network is cut, both ways, notices through
// its socket's TCP keepalive (the server may rightly say nothing while the
// lock is held) and waits again; once the network is back and the holder
// lets go, it gets the lock. The partitioned session ends on the server within
// its bound, taking its place in the queue with it.
func TestLock_waitSurvivesPartition(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool, other, admin := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	ctx := t.Context()
	holder, err := advisorylock.New(other, "cut-wait").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := newHookRecorder("r")
	res := lockAsync(ctx, advisorylock.New(pool, "cut-wait",
		advisorylock.WithKeepalive(time.Second), advisorylock.WithHooks(rec), advisorylock.WithTimeout(time.Minute)))
	pgtest.AwaitWaiters(t, admin, 1)
	heal := pgtest.Partition(t, admin, pgtest.AdvisoryLockPIDs(t, admin, "not granted")[0])
	start := time.Now()
	rec.log.await(t, "AcquireRetry", 1)
	t.Logf("a wait across a cut network started again %v after the cut (%v)", time.Since(start).Round(time.Millisecond),
		rec.log.only("AcquireRetry")[0].retry.Err)
	heal()
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("Lock after its wait's network was cut = %v; want the lock", r.err)
	}
	if err := r.l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
