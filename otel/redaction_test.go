package advisorylockotel_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

func TestHashLockName(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, want string }{
		// printf %s NAME | sha256sum | cut -c1-16
		{"test-lock", "a54393f96b8dd28e"},
		{"customer-4711", "85d0c1e318151f3b"},
		{"", "e3b0c44298fc1c14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := advisorylockotel.HashLockName(tt.name); got != tt.want {
				t.Errorf("HashLockName(%q) = %q; want %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestLockNamePolicy_String(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    advisorylockotel.LockNamePolicy
		want string
	}{
		{advisorylockotel.LockNameHashed, "hashed"},
		{advisorylockotel.LockNameFull, "full"},
		{advisorylockotel.LockNameOmitted, "omitted"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("LockNamePolicy(%d).String() = %q; want %q", tt.p, got, tt.want)
		}
	}
}

// The lock's name appears in spans, metrics and error descriptions only as
// WithLockName and WithMetricLockName say; by default, spans carry its hash
// and metrics nothing of it.
func TestHook_lockNamePolicy(t *testing.T) {
	t.Parallel()
	const name = "customer-4711"
	key := advisorylock.KeyFromName(name)
	hash := advisorylockotel.HashLockName(name)
	dsn := pgtest.Database(t)
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)

	tests := []struct {
		name       string
		opts       []advisorylockotel.Option
		spanName   attribute.KeyValue // the name attribute on spans; invalid for none
		metricName attribute.KeyValue // the name attribute in metrics; invalid for none
	}{
		{name: "default", spanName: advisorylockotel.LockNameHashKey.String(hash)},
		{name: "hashed", opts: []advisorylockotel.Option{advisorylockotel.WithLockName(advisorylockotel.LockNameHashed)}, spanName: advisorylockotel.LockNameHashKey.String(hash)},
		{name: "full", opts: []advisorylockotel.Option{advisorylockotel.WithLockName(advisorylockotel.LockNameFull)}, spanName: advisorylockotel.LockNameKey.String(name)},
		{name: "omitted", opts: []advisorylockotel.Option{advisorylockotel.WithLockName(advisorylockotel.LockNameOmitted)}},
		{name: "invalid policy ignored", opts: []advisorylockotel.Option{advisorylockotel.WithLockName(advisorylockotel.LockNameFull), advisorylockotel.WithLockName(9)}, spanName: advisorylockotel.LockNameKey.String(name)},
		{name: "hashed in metrics", opts: []advisorylockotel.Option{advisorylockotel.WithMetricLockName(true)}, spanName: advisorylockotel.LockNameHashKey.String(hash), metricName: advisorylockotel.LockNameHashKey.String(hash)},
		{name: "full in metrics", opts: []advisorylockotel.Option{advisorylockotel.WithLockName(advisorylockotel.LockNameFull), advisorylockotel.WithMetricLockName(true)}, spanName: advisorylockotel.LockNameKey.String(name), metricName: advisorylockotel.LockNameKey.String(name)},
		{name: "omitted in metrics", opts: []advisorylockotel.Option{advisorylockotel.WithLockName(advisorylockotel.LockNameOmitted), advisorylockotel.WithMetricLockName(true)}},
		{name: "metrics off again", opts: []advisorylockotel.Option{advisorylockotel.WithMetricLockName(true), advisorylockotel.WithMetricLockName(false)}, spanName: advisorylockotel.LockNameHashKey.String(hash)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, log := newTracing(t)
			mp, reader := newMetering(t)
			hook := advisorylockotel.NewHook(append(tt.opts, advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp))...)
			m := advisorylock.New(pool, name, advisorylock.WithHooks(hook), advisorylock.WithTimeout(20*time.Millisecond))
			if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
				t.Fatal(err)
			}
			holder, err := advisorylock.New(other, name).Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Lock(t.Context())
			if uerr := holder.Unlock(t.Context()); uerr != nil {
				t.Fatal(uerr)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Lock = %v; want a timeout", err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("the error %q does not name the lock: the test proves nothing", err)
			}

			spans := log.Ended()
			if len(spans) != 3 {
				t.Fatalf("%d spans; want 3", len(spans))
			}
			for _, s := range spans {
				got := attrs(s.Attributes())
				for _, k := range []attribute.Key{advisorylockotel.LockNameKey, advisorylockotel.LockNameHashKey} {
					v, ok := got[k]
					switch {
					case k == tt.spanName.Key && (!ok || v != tt.spanName.Value):
						t.Errorf("%s span: %s = %q; want %q", s.Name(), k, v.String(), tt.spanName.Value.String())
					case k != tt.spanName.Key && ok:
						t.Errorf("%s span: %s = %q; want no such attribute", s.Name(), k, v.String())
					}
				}
			}
			failed := log.named(advisorylockotel.AcquireSpanName)[1]
			desc := failed.Status().Description
			if failed.Status().Code != codes.Error {
				t.Fatalf("timed-out acquire span's status = %+v; want Error", failed.Status())
			}
			full := tt.spanName.Key == advisorylockotel.LockNameKey
			if strings.Contains(desc, name) != full {
				t.Errorf("status description %q names the lock: %v; want %v", desc, !full, full)
			}
			if !full && !strings.Contains(desc, "key "+key.String()) {
				t.Errorf("status description %q; want the lock named by its key %s", desc, key)
			}

			for _, text := range metricTexts(t, collect(t, reader)) {
				isName := strings.HasPrefix(text, string(advisorylockotel.LockNameKey)+"=") || strings.HasPrefix(text, string(advisorylockotel.LockNameHashKey)+"=")
				if isName && (!tt.metricName.Valid() || text != string(tt.metricName.Key)+"="+tt.metricName.Value.String()) {
					t.Errorf("metric attribute %s; want %s", text, tt.metricName.Value.String())
				}
				if strings.Contains(text, name) && tt.metricName.Key != advisorylockotel.LockNameKey {
					t.Errorf("metric attribute %s names the lock", text)
				}
			}
			if tt.metricName.Valid() {
				if got, _ := sumPoint(t, collect(t, reader)[advisorylockotel.AcquisitionsName],
					advisorylockotel.LockModeKey.String("exclusive"), advisorylockotel.LockScopeKey.String("session"),
					advisorylockotel.TryKey.Bool(false), advisorylockotel.OutcomeKey.String("acquired"), tt.metricName); got != 1 {
					t.Errorf("acquisitions with %s = %d; want 1", tt.metricName.Value.String(), got)
				}
			}
		})
	}

	t.Run("NewWithKey", func(t *testing.T) {
		tp, log := newTracing(t)
		hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithLockName(advisorylockotel.LockNameFull))
		m := advisorylock.NewWithKey(pool, advisorylock.Int64Key(-42), advisorylock.WithHooks(hook))
		if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
			t.Fatal(err)
		}
		for _, s := range log.Ended() {
			wantAttrs(t, s, advisorylockotel.LockKeyKey.String("-42"))
			wantNoAttrs(t, s, advisorylockotel.LockNameKey, advisorylockotel.LockNameHashKey)
		}
	})
}

// No span and no metric carries the connection string or the password, on
// any path: acquired, busy, timed out, cancelled, lost, and failing to
// connect with a wrong password. The harness's server requires a password,
// so the DSN has one.
func TestHook_noConnectionString(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	password := srv.Password()
	if password == "" {
		pgtest.Unavailable(t, "the server takes no password: nothing to leak")
	}
	dsn := pgtest.Database(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const wrongPassword = "wrong-password-c0ffee"
	u.User = url.UserPassword(u.User.Username(), wrongPassword)
	wrongDSN := u.String()
	secrets := []string{password, dsn, wrongPassword, wrongDSN, u.Host + "/" + strings.TrimPrefix(u.Path, "/") + "?"}

	tp, log := newTracing(t)
	mp, reader := newMetering(t)
	hook := advisorylock.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp), advisorylockotel.WithLockName(advisorylockotel.LockNameFull), advisorylockotel.WithMetricLockName(true)))
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)

	// Acquired and released.
	m := advisorylock.New(pool, "secrets", hook, advisorylock.WithTimeout(20*time.Millisecond))
	if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	// Busy, timed out, cancelled and lost.
	contend(t, m, other, true)
	log.await(t, advisorylockotel.HoldSpanName, 2)
	// A wrong password.
	wrong := pgtest.NewPool(t, wrongDSN)
	if _, err := advisorylock.New(wrong, "secrets", hook).Lock(t.Context()); err == nil {
		t.Fatal("Lock with a wrong password succeeded")
	}
	spans := log.named(advisorylockotel.AcquireSpanName)
	if len(spans) != 6 {
		t.Fatalf("%d acquire spans; want 6", len(spans))
	}
	last := spans[len(spans)-1]
	wantAttrs(t, last, advisorylockotel.OutcomeKey.String("error"), semconv.ErrorTypeKey.String("28P01"))
	t.Logf("the failed connection's span: %q", last.Status().Description)

	var texts []string
	for _, s := range log.Ended() {
		texts = append(texts, spanTexts(s)...)
	}
	texts = append(texts, metricTexts(t, collect(t, reader))...)
	pgtest.AssertNoSecrets(t, texts, secrets...)
}
