package advisorylockslog_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/lockid"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockslog "github.com/advisorylock/advisorylock/slog"
)

func hash(name string) string { return lockid.Hash(name) }

// The lock's name appears in records only as WithLockName says: by default,
// as its hash, and never in the text of an error.
func TestHook_lockNamePolicy(t *testing.T) {
	t.Parallel()
	const name = "customer-4711"
	dsn := pgtest.Database(t)
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	tests := []struct {
		name string
		opts []advisorylockslog.Option
		key  string // the name's key in the lock group; "" for none
		want string // its value
	}{
		{name: "default", key: "name_hash", want: hash(name)},
		{name: "hashed", opts: []advisorylockslog.Option{advisorylockslog.WithLockName(advisorylockslog.LockNameHashed)}, key: "name_hash", want: hash(name)},
		{name: "full", opts: []advisorylockslog.Option{advisorylockslog.WithLockName(advisorylockslog.LockNameFull)}, key: "name", want: name},
		{name: "omitted", opts: []advisorylockslog.Option{advisorylockslog.WithLockName(advisorylockslog.LockNameOmitted)}},
		{name: "invalid policy ignored", opts: []advisorylockslog.Option{advisorylockslog.WithLockName(advisorylockslog.LockNameFull), advisorylockslog.WithLockName(9)}, key: "name", want: name},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, out := newLogger(slog.LevelDebug)
			opts := append([]advisorylockslog.Option{advisorylockslog.WithWaitThreshold(0), advisorylockslog.WithHoldThreshold(0)}, tt.opts...)
			m := advisorylock.New(pool, name, advisorylock.WithTimeout(20*time.Millisecond), advisorylock.WithHooks(advisorylockslog.NewHook(logger, opts...)))
			if err := withLock(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			holder, err := advisorylock.New(other, name).Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			err = lock(t.Context(), m)
			if uerr := holder.Unlock(t.Context()); uerr != nil {
				t.Fatal(uerr)
			}
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("Lock = %v; want a timeout naming the lock, or the test proves nothing", err)
			}

			rs := out.records(t)
			if len(rs) != 3 {
				t.Fatalf("records %q; want a long wait, a long hold and a timeout", out.lines())
			}
			for _, r := range rs {
				for _, k := range []string{"name", "name_hash"} {
					if got, want := r.str("lock."+k), map[bool]string{true: tt.want}[k == tt.key]; got != want {
						t.Errorf("%s record: lock.%s = %q; want %q", r.str("msg"), k, got, want)
					}
				}
				if got := r.str("lock.key"); got != m.Key().String() {
					t.Errorf("%s record: lock.key = %q; want %q", r.str("msg"), got, m.Key())
				}
			}
			if text := strings.Join(out.lines(), "\n"); strings.Contains(text, name) != (tt.key == "name") {
				t.Errorf("records name the lock: %v; want %v:\n%s", !(tt.key == "name"), tt.key == "name", text)
			}
		})
	}

	t.Run("NewWithKey", func(t *testing.T) {
		logger, out := newLogger(slog.LevelDebug)
		hook := advisorylockslog.NewHook(logger, advisorylockslog.WithHoldThreshold(0), advisorylockslog.WithLockName(advisorylockslog.LockNameFull))
		m := advisorylock.NewWithKey(pool, advisorylock.Int64Key(-42), advisorylock.WithHooks(hook))
		if err := withLock(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		r := out.one(t)
		if r.str("lock.key") != "-42" || r.has("lock.name") || r.has("lock.name_hash") {
			t.Errorf("lock = %v; want the key -42 alone", r.get("lock"))
		}
	})
}

// No record carries a password: for a pool that works (locks acquired, busy,
// timed out, cancelled, lost), one whose server refuses the connection, one
// whose role gets a wrong password and one whose own user does. Every event
// is logged, with names in full.
func TestSecrets_logs(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	tests, secrets := pgtest.Require(t).SecretDSNs(t, dsn)
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			logger, out := newLogger(slog.LevelDebug)
			hook := advisorylock.WithHooks(advisorylockslog.NewHook(logger, advisorylockslog.WithLockName(advisorylockslog.LockNameFull),
				advisorylockslog.WithWaitThreshold(0), advisorylockslog.WithHoldThreshold(0)))
			pool := pgtest.NewPool(t, tt.DSN)
			ctx := t.Context()
			for _, m := range []*advisorylock.Mutex{
				advisorylock.New(pool, "secrets", hook),
				advisorylock.New(pool, "secrets", hook, advisorylock.TransactionScope()),
				advisorylock.NewSet(pool, []string{"secrets", "more"}, hook, advisorylock.Shared()),
			} {
				if err := withLock(ctx, m); (err == nil) != tt.OK {
					t.Errorf("WithLock %s: %v (ok = %v)", m, err, tt.OK)
				}
			}
			if tt.OK {
				other := pgtest.NewPool(t, tt.DSN)
				holder, err := advisorylock.New(other, "secrets").Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				m := advisorylock.New(pool, "secrets", hook, advisorylock.WithTimeout(20*time.Millisecond))
				_ = tryLock(ctx, m)
				_ = lock(ctx, m)
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				_ = lock(cctx, m)
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				l, err := m.Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pgtest.TerminateHolder(t, pgtest.NewPool(t, dsn))
				<-l.Done()
				_ = l.Unlock(ctx)
			}
			n := 3 // the failures to connect
			if tt.OK {
				n = 3*2 + 1 + 1 + 1 + 1 // a wait and a hold each, the timeout, a cancellation, the lost lock's wait and loss
			}
			lines := out.await(t, n)
			failed := 0
			for _, r := range out.records(t) {
				if e := r.str("err"); strings.Contains(e, "28P01") || strings.Contains(e, "refused") {
					failed++
				}
			}
			if !tt.OK && failed == 0 {
				t.Errorf("no record describes the failed connection: the test proves nothing:\n%s", strings.Join(out.lines(), "\n"))
			}
			pgtest.AssertNoSecrets(t, out.lines(), secrets...)
			t.Logf("%d records searched", len(lines))
		})
	}
}
