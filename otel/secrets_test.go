package advisorylockotel_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// No span, span event, status or metric carries a password: for a pool that
// works (locks acquired, busy, timed out, lost; an election won), one whose
// server refuses the connection, one whose role gets a wrong password and one
// whose own user does. The hooks record names in full and in metrics, and by
// default, so that everything that can be recorded is.
func TestSecrets_telemetry(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	tests, secrets := pgtest.Require(t).SecretDSNs(t, dsn)
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			tp, spans := newTracing(t)
			mp, reader := newMetering(t)
			hook := advisorylock.MultiHook(
				advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp),
					advisorylockotel.WithLockName(advisorylockotel.LockNameFull), advisorylockotel.WithMetricLockName(true)),
				advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp)),
			)
			pool := pgtest.NewPool(t, tt.DSN)
			ctx := t.Context()
			expect := func(what string, err error) {
				t.Helper()
				if tt.OK != (err == nil) {
					t.Errorf("%s: %v (ok = %v)", what, err, tt.OK)
				}
			}

			for _, m := range []*advisorylock.Mutex{
				advisorylock.New(pool, "secrets", advisorylock.WithHooks(hook)),
				advisorylock.New(pool, "secrets", advisorylock.WithHooks(hook), advisorylock.TransactionScope()),
				advisorylock.NewSet(pool, []string{"secrets", "more"}, advisorylock.WithHooks(hook), advisorylock.Shared()),
			} {
				_, err := advisorylock.WithLock(ctx, m, func(context.Context) (int, error) { return 0, nil })
				expect("WithLock "+m.String(), err)
				l, err := m.TryLock(ctx)
				expect("TryLock "+m.String(), err)
				if l != nil {
					expect("Unlock", l.Unlock(ctx))
				}
			}
			el := election.New(pool, "secrets-election", election.WithHooks(hook))
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ld, err := el.Campaign(cctx)
			cancel()
			expect("Campaign", err)
			if ld != nil {
				expect("Resign", ld.Resign(ctx))
			}
			if err := el.Close(ctx); err != nil {
				t.Errorf("Close: %v", err)
			}

			if tt.OK {
				// Busy, timed out, cancelled and lost, as another session
				// of the same role holds the lock, then ends the lock's
				// session.
				m := advisorylock.New(pool, "secrets", advisorylock.WithHooks(hook), advisorylock.WithTimeout(20*time.Millisecond))
				contend(t, m, pgtest.NewPool(t, tt.DSN), true)
				spans.await(t, advisorylockotel.HoldSpanName, 2*8) // 8 holds, each seen by both hooks
			}

			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			ended := spans.Ended()
			if len(ended) == 0 || len(rm.ScopeMetrics) == 0 {
				t.Fatalf("%d spans and %d scopes of metrics: the test proves nothing", len(ended), len(rm.ScopeMetrics))
			}
			failed := 0
			for _, s := range ended {
				if strings.Contains(s.Status().Description, "28P01") || strings.Contains(s.Status().Description, "refused") {
					failed++
				}
			}
			if !tt.OK && failed == 0 {
				t.Error("no span describes the failed connection: the test proves nothing")
			}
			texts := telemetryTexts(t, ended, rm)
			pgtest.AssertNoSecrets(t, texts, secrets...)
			t.Logf("%d spans, %d texts searched", len(ended), len(texts))
		})
	}
}

// The error-recording paths format errors with %v into span statuses; a
// failing connection's error, as the library returns it, is what they get.
// This checks that text itself for the URL forms pgx accepts, with the
// password in the userinfo, percent-encoded, and in the query string.
func TestSecrets_connectErrorForms(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	role, password := pgtest.Require(t).SecretRole(t)
	port := pgtest.ClosedPort(t)
	u, err := url.Parse(pgtest.WithCredentials(t, dsn, role, password, port))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("password", password)
	inQuery := *u
	inQuery.User = url.User(role)
	inQuery.RawQuery = q.Encode()
	for _, d := range []string{u.String(), inQuery.String(),
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=x sslmode=disable", port, role, password)} {
		tp, spans := newTracing(t)
		hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithLockName(advisorylockotel.LockNameFull))
		_, err := advisorylock.New(pgtest.NewPool(t, d), "secrets", advisorylock.WithHooks(hook)).Lock(t.Context())
		if err == nil {
			t.Fatal("Lock on a closed port succeeded")
		}
		pgtest.AssertNoSecrets(t, append(telemetryTexts(t, spans.Ended(), metricdata.ResourceMetrics{}), err.Error()), password)
	}
}
