package advisorylockotel_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// spanLog records ended spans, and lets a test await them.
type spanLog struct {
	*tracetest.SpanRecorder
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a span ends
}

func (s *spanLog) OnEnd(span sdktrace.ReadOnlySpan) {
	s.SpanRecorder.OnEnd(span)
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// named returns the ended spans called name, in the order they ended.
func (s *spanLog) named(name string) []sdktrace.ReadOnlySpan {
	var spans []sdktrace.ReadOnlySpan
	for _, sp := range s.Ended() {
		if sp.Name() == name {
			spans = append(spans, sp)
		}
	}
	return spans
}

// await waits until n spans called name have ended and returns them, or fails
// t after 10s.
func (s *spanLog) await(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if spans := s.named(name); len(spans) >= n {
			return spans
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d %s spans ended after 10s; want %d", len(s.named(name)), name, n)
		}
	}
}

// one returns the only ended span called name, or fails t.
func (s *spanLog) one(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := s.named(name)
	if len(spans) != 1 {
		t.Fatalf("%d %s spans ended; want 1", len(spans), name)
	}
	return spans[0]
}

// newTracing returns a TracerProvider that samples every span and records
// those ended in the returned log.
func newTracing(t testing.TB) (*sdktrace.TracerProvider, *spanLog) {
	log := &spanLog{SpanRecorder: tracetest.NewSpanRecorder(), changed: make(chan struct{})}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(log), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, log
}

// newMetering returns a MeterProvider read by the returned manual reader.
func newMetering(t testing.TB) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reader
}

// collect reads the metrics of this instrumentation's scope, by name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	ms := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != advisorylockotel.ScopeName {
			t.Errorf("metrics of scope %q; want only %q", sm.Scope.Name, advisorylockotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			ms[m.Name] = m
		}
	}
	return ms
}

// attrs returns a span's attributes by key.
func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// pgxSpans is a pgx tracer making a span of every query and batch, as a pgx
// instrumentation would: it shows where the lock's and the user's statements
// land in a trace.
type pgxSpans struct{ tracer trace.Tracer }

// queryTextKey is the statement a pgxSpans span ran.
const queryTextKey = attribute.Key("db.query.text")

func tracePgx(tp trace.TracerProvider) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		cfg.ConnConfig.Tracer = pgxSpans{tracer: tp.Tracer("test/pgx")}
	}
}

func (p pgxSpans) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	ctx, _ = p.tracer.Start(ctx, "pgx.query", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(queryTextKey.String(data.SQL)))
	return ctx
}

func (p pgxSpans) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	trace.SpanFromContext(ctx).End()
}

func (p pgxSpans) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	var sqls []string
	for _, q := range data.Batch.QueuedQueries {
		sqls = append(sqls, q.SQL)
	}
	ctx, _ = p.tracer.Start(ctx, "pgx.batch", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(queryTextKey.String(strings.Join(sqls, "; "))))
	return ctx
}

func (p pgxSpans) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (p pgxSpans) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	trace.SpanFromContext(ctx).End()
}
