package advisorylockotel_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// telemetryTexts returns every string the recorded telemetry carries: of each
// span its name, status, attributes, events (names and attributes), links'
// attributes, scope and resource; of each metric its scope, name,
// description, unit, and the attributes of every data point and exemplar.
func telemetryTexts(t *testing.T, spans []sdktrace.ReadOnlySpan, rm metricdata.ResourceMetrics) []string {
	t.Helper()
	var texts []string
	kvs := func(where string, kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			texts = append(texts, where+": "+string(kv.Key)+"="+kv.Value.String())
		}
	}
	for _, s := range spans {
		where := "span " + s.Name()
		texts = append(texts, where, where+": status "+s.Status().Description, where+": scope "+s.InstrumentationScope().Name)
		kvs(where, s.Attributes())
		kvs(where+" resource", s.Resource().Attributes())
		for _, e := range s.Events() {
			texts = append(texts, where+": event "+e.Name)
			kvs(where+" event "+e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			kvs(where+" link", l.Attributes)
		}
	}
	kvs("metrics resource", rm.Resource.Attributes())
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			where := "metric " + m.Name
			texts = append(texts, where+": scope "+sm.Scope.Name+" "+m.Description+" "+m.Unit)
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					kvs(where, p.Attributes.ToSlice())
					for _, e := range p.Exemplars {
						kvs(where+" exemplar", e.FilteredAttributes)
					}
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					kvs(where, p.Attributes.ToSlice())
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					kvs(where, p.Attributes.ToSlice())
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					kvs(where, p.Attributes.ToSlice())
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					kvs(where, p.Attributes.ToSlice())
					for _, e := range p.Exemplars {
						kvs(where+" exemplar", e.FilteredAttributes)
					}
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					kvs(where, p.Attributes.ToSlice())
				}
			default:
				t.Errorf("metric %s: data of type %T not searched; add it", m.Name, m.Data)
			}
		}
	}
	return texts
}

// No span, span event, status or metric carries a password: for a pool that
// works (locks acquired, busy, timed out, lost; an election won), one whose
// server refuses the connection, one whose role gets a wrong password and one
// whose own user does. The hooks record names in full and in metrics, and by
// default, so that everything that can be recorded is.
func TestSecrets_telemetry(t *testing.T) {
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
				// of the same role holds the lock, then the lock's session
				// is ended.
				other := pgtest.NewPool(t, tt.DSN)
				holder, err := advisorylock.New(other, "secrets").Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				m := advisorylock.New(pool, "secrets", advisorylock.WithHooks(hook), advisorylock.WithTimeout(20*time.Millisecond))
				if _, err := m.TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
					t.Errorf("TryLock = %v; want ErrLocked", err)
				}
				if _, err := m.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Lock = %v; want a timeout", err)
				}
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				if _, err := m.Lock(cctx); !errors.Is(err, context.Canceled) {
					t.Errorf("Lock = %v; want Canceled", err)
				}
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				l, err := m.Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pgtest.TerminateHolder(t, pgtest.NewPool(t, dsn))
				select {
				case <-l.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("the loss was not noticed within 10s")
				}
				if err := l.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
					t.Errorf("Unlock of a lost lock = %v; want ErrLockLost", err)
				}
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
