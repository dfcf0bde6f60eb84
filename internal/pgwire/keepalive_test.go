package pgwire_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// An idle session whose network goes silent probes the server and, with no
// answer, ends with ErrSilent.
func TestKeepalive_silentIdle(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	proxy := viaProxy(t, cfg)
	dead := make(deaths, 2)
	s := connect(t, cfg, pgwire.Options{Keepalive: 200 * time.Millisecond, OnDead: dead.onDead})
	do(t, s, "select 1")
	proxy.Freeze()
	awaitClosed(t, s)
	err := s.Err()
	if !errors.Is(err, pgwire.ErrSilent) || !errors.Is(err, pgwire.ErrClosed) {
		t.Errorf("Err = %v; want ErrSilent and ErrClosed", err)
	}
	if n := s.Probes(); n < 1 {
		t.Errorf("%d probes sent; want at least 1", n)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	dead.check(t, err)
}

// A query pending on a silent network is answered by ErrSilent.
func TestKeepalive_silentPending(t *testing.T) {
	t.Parallel()
	_, cfg := testDB(t)
	proxy := viaProxy(t, cfg)
	s := connect(t, cfg, pgwire.Options{Keepalive: 200 * time.Millisecond})
	do(t, s, "select 1")
	proxy.Freeze()
	_, err := s.Do(t.Context(), "select 2")
	if !errors.Is(err, pgwire.ErrSilent) || !errors.Is(err, pgwire.ErrClosed) {
		t.Errorf("Do on a silent network = %v; want ErrSilent and ErrClosed", err)
	}
}

// A healthy idle session sends probes, with the text Probe returns, and
// lives on.
func TestKeepalive_probes(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	var calls atomic.Int64
	s := connect(t, cfg, pgwire.Options{
		Keepalive: 100 * time.Millisecond,
		Probe:     func() string { return fmt.Sprintf("-- pgwire test probe %d", calls.Add(1)) },
	})
	await(t, "three probes", func() bool { return s.Probes() >= 3 || s.Err() != nil })
	if err := s.Err(); err != nil {
		t.Fatalf("Err = %v after %d probes; want the session alive", err, s.Probes())
	}
	other := otherConn(t, dsn)
	// pg_stat_activity shows an idle session's last query: a probe.
	await(t, "a probe in pg_stat_activity", func() bool {
		var query string
		if err := other.QueryRow(t.Context(), "select query from pg_catalog.pg_stat_activity where pid = $1",
			int64(s.PID())).Scan(&query); err != nil {
			t.Fatal(err)
		}
		return strings.HasPrefix(query, "-- pgwire test probe ")
	})
	if err := s.Err(); err != nil {
		t.Fatalf("Err = %v; want the session alive", err)
	}
	if got, sent := calls.Load(), s.Probes(); got < sent {
		t.Errorf("Probe called %d times for %d probes", got, sent)
	}
	if got := do(t, s, "select 'after probes'"); got[0] != "after probes" {
		t.Errorf("Do after probes = %q", got)
	}
}
