package advisorylockotel_test

import (
	"context"
	"errors"
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

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
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

// contend takes m through the outcomes other than acquired while a session
// of other holds m's lock: busy (TryLock), timeout (Lock: m must have a
// WithTimeout) and, with cancelled, canceled (Lock with a done context).
// Then, the lock released, it takes m's lock and ends its session from
// other, and returns once the lock knows it is lost.
func contend(t *testing.T, m *advisorylock.Mutex, other *pgxpool.Pool, cancelled bool) {
	t.Helper()
	ctx := t.Context()
	holder, err := advisorylock.NewWithKey(other, m.Key()).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("TryLock = %v; want ErrLocked", err)
	}
	if _, err := m.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock = %v; want a timeout", err)
	}
	if cancelled {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := m.Lock(cctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Lock = %v; want Canceled", err)
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.TerminateHolder(t, other)
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the loss was not noticed within 10s")
	}
	if err := l.Unlock(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Unlock of a lost lock = %v; want ErrLockLost", err)
	}
}

// kvTexts returns attributes as key=value texts.
func kvTexts(kvs []attribute.KeyValue) []string {
	texts := make([]string, len(kvs))
	for i, kv := range kvs {
		texts[i] = string(kv.Key) + "=" + kv.Value.String()
	}
	return texts
}

// spanTexts returns every string a span carries: its name, status
// description and scope, its attributes and its resource's, its events' names
// and attributes, and its links' attributes.
func spanTexts(s sdktrace.ReadOnlySpan) []string {
	texts := []string{s.Name(), s.Status().Description, s.InstrumentationScope().Name}
	texts = append(texts, kvTexts(s.Attributes())...)
	texts = append(texts, kvTexts(s.Resource().Attributes())...)
	for _, e := range s.Events() {
		texts = append(append(texts, e.Name), kvTexts(e.Attributes)...)
	}
	for _, l := range s.Links() {
		texts = append(texts, kvTexts(l.Attributes)...)
	}
	return texts
}

// metricTexts returns the attributes, as key=value, of every data point in ms
// and of their exemplars.
func metricTexts(t *testing.T, ms map[string]metricdata.Metrics) []string {
	t.Helper()
	var texts []string
	for _, m := range ms {
		texts = append(texts, pointTexts(t, m)...)
	}
	return texts
}

// pointTexts returns the attributes, as key=value, of m's data points and
// their exemplars. It fails t for a kind of data it cannot search.
func pointTexts(t *testing.T, m metricdata.Metrics) []string {
	t.Helper()
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		return dataPointTexts(d.DataPoints)
	case metricdata.Sum[float64]:
		return dataPointTexts(d.DataPoints)
	case metricdata.Gauge[int64]:
		return dataPointTexts(d.DataPoints)
	case metricdata.Gauge[float64]:
		return dataPointTexts(d.DataPoints)
	case metricdata.Histogram[int64]:
		return histogramPointTexts(d.DataPoints)
	case metricdata.Histogram[float64]:
		return histogramPointTexts(d.DataPoints)
	default:
		t.Errorf("metric %s: data of type %T not searched; add it", m.Name, m.Data)
		return nil
	}
}

func dataPointTexts[N int64 | float64](ps []metricdata.DataPoint[N]) (texts []string) {
	for _, p := range ps {
		texts = append(texts, attrTexts(p.Attributes, p.Exemplars)...)
	}
	return texts
}

func histogramPointTexts[N int64 | float64](ps []metricdata.HistogramDataPoint[N]) (texts []string) {
	for _, p := range ps {
		texts = append(texts, attrTexts(p.Attributes, p.Exemplars)...)
	}
	return texts
}

// attrTexts returns a data point's attributes and those of its exemplars.
func attrTexts[N int64 | float64](set attribute.Set, exemplars []metricdata.Exemplar[N]) []string {
	texts := kvTexts(set.ToSlice())
	for _, e := range exemplars {
		texts = append(texts, kvTexts(e.FilteredAttributes)...)
	}
	return texts
}

// telemetryTexts returns every string the recorded telemetry carries, each
// prefixed with where it is: spanTexts of each span; the resource of the
// metrics; of each metric its scope, name, description, unit and pointTexts.
func telemetryTexts(t *testing.T, spans []sdktrace.ReadOnlySpan, rm metricdata.ResourceMetrics) []string {
	t.Helper()
	var texts []string
	add := func(where string, xs []string) {
		for _, x := range xs {
			texts = append(texts, where+": "+x)
		}
	}
	for _, s := range spans {
		add("span "+s.Name(), spanTexts(s))
	}
	add("metrics resource", kvTexts(rm.Resource.Attributes()))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			where := "metric " + m.Name
			add(where, append([]string{"scope " + sm.Scope.Name + " " + m.Description + " " + m.Unit}, pointTexts(t, m)...))
		}
	}
	return texts
}
