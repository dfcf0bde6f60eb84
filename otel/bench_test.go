package advisorylockotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/interleave"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// discardProcessor is a span processor that drops every span as it ends: the
// spans are sampled and recorded in full (attributes, status, a snapshot at
// End), and exported nowhere.
type discardProcessor struct{}

func (discardProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discardProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discardProcessor) Shutdown(context.Context) error                  { return nil }
func (discardProcessor) ForceFlush(context.Context) error                { return nil }

// discardExporter is a span exporter that drops what it is given.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// referenceHook is the floor the Hook is measured against: the least
// telemetry of a locked section, emitted as directly as the SDK allows. Two
// spans, the acquisition's and the hold's (the parent of fn's work), each
// started with four attributes; a histogram record of the wait and one of
// the hold; two updates of the count of locks held. Everything it records
// with is built once, for the one Mutex it serves; it finds its spans in
// the contexts the SDK returns, and knows nothing of outcomes, errors or
// other hooks.
type referenceHook struct {
	tracer                        trace.Tracer
	acquireOpts, holdOpts         []trace.SpanStartOption
	acquireDuration, holdDuration metric.Float64Histogram
	held                          metric.Int64UpDownCounter
	record                        []metric.RecordOption
	add                           []metric.AddOption
}

func newReferenceHook(tb testing.TB, tp trace.TracerProvider, mp metric.MeterProvider, m *advisorylock.Mutex) *referenceHook {
	attrs := trace.WithAttributes(semconv.DBSystemNamePostgreSQL,
		advisorylockotel.LockKeyKey.String(m.Key().String()),
		advisorylockotel.LockNameHashKey.String(advisorylockotel.HashLockName(m.Name())),
		advisorylockotel.LockModeKey.String(m.Mode().String()))
	meter := mp.Meter("reference")
	r := &referenceHook{
		tracer:      tp.Tracer("reference"),
		acquireOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), attrs},
		holdOpts:    []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), attrs},
	}
	set := metric.WithAttributeSet(attribute.NewSet(
		advisorylockotel.LockModeKey.String(m.Mode().String()),
		advisorylockotel.LockScopeKey.String(m.Scope().String())))
	r.record, r.add = []metric.RecordOption{set}, []metric.AddOption{set}
	var errs [3]error
	r.acquireDuration, errs[0] = meter.Float64Histogram("acquire")
	r.holdDuration, errs[1] = meter.Float64Histogram("hold")
	r.held, errs[2] = meter.Int64UpDownCounter("held")
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

func (r *referenceHook) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	ctx, _ = r.tracer.Start(ctx, advisorylockotel.AcquireSpanName, r.acquireOpts...)
	return ctx
}

func (r *referenceHook) AcquireEnd(ctx context.Context, _ *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	trace.SpanFromContext(ctx).End()
	r.acquireDuration.Record(ctx, data.Wait.Seconds(), r.record...)
}

func (r *referenceHook) HoldStart(ctx context.Context, _ *advisorylock.Lock, _ advisorylock.HoldStartData) context.Context {
	ctx, _ = r.tracer.Start(ctx, advisorylockotel.HoldSpanName, r.holdOpts...)
	r.held.Add(ctx, 1, r.add...)
	return ctx
}

func (r *referenceHook) HoldEnd(ctx context.Context, _ *advisorylock.Lock, data advisorylock.HoldEndData) {
	trace.SpanFromContext(ctx).End()
	r.holdDuration.Record(ctx, data.Held.Seconds(), r.record...)
	r.held.Add(ctx, -1, r.add...)
}

// underRemoteParent returns a context with a remote span context, as for a
// request that came with a traceparent: the spans the hooks start are its
// children, and link to nothing.
func underRemoteParent() context.Context {
	return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1},
		SpanID:     trace.SpanID{1},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	}))
}

// BenchmarkWithLock is an uncontended session-scoped locked section, on one
// pool and one lock, under a span of the caller's (remote, as for a request
// that came with a traceparent):
//
//   - nohooks: no hooks, the floor of the ratios;
//   - reference: referenceHook, the floor of the Hook's added cost;
//   - otel: the Hook on the SDK's providers, sampling and recording every
//     span (dropped by a synchronous processor) and every measurement (read
//     by a manual reader), as the reference does;
//   - otel-noop: the Hook on the no-op providers of the trace/noop and
//     metric/noop packages, which it recognises;
//   - otel-global-unset: the Hook on the global providers, with no SDK
//     registered, which do nothing but are not recognised;
//   - otel-batch: the Hook with the SDK's BatchSpanProcessor (and an exporter
//     that drops), as production would run, which adds the SDK's hand-off of
//     each span to its export goroutine;
//   - interleaved: the cases but the batch one taking turns call by call (see
//     package interleave). It reports each one's median time per call and
//     its ratio to nohooks, and otel-added/reference-added: the Hook's added
//     time over the reference's.
//
// Each case but interleaved reports its allocations per section.
func BenchmarkWithLock(b *testing.B) {
	dsn := pgtest.Require(b).CreateDatabase(b)
	pool := pgtest.NewPool(b, dsn, func(c *pgxpool.Config) { c.MaxConns = 2 })

	recordingTP := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(discardProcessor{}))
	batchTP := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardExporter{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		ctx := context.Background()
		_ = recordingTP.Shutdown(ctx)
		_ = batchTP.Shutdown(ctx)
		_ = mp.Shutdown(ctx)
	})

	const name = "bench"
	hooked := func(opts ...advisorylockotel.Option) *advisorylock.Mutex {
		return advisorylock.New(pool, name, advisorylock.WithHooks(advisorylockotel.NewHook(opts...)))
	}
	plain := advisorylock.New(pool, name)
	ctx := underRemoteParent()
	fn := func(context.Context) (int, error) { return 1, nil }
	section := func(name string, m *advisorylock.Mutex) interleave.Case {
		return interleave.Case{Name: name, Call: func() error {
			_, err := advisorylock.WithLock(ctx, m, fn)
			return err
		}}
	}
	interleave.Bench(b, []interleave.Case{
		section("nohooks", plain),
		section("reference", advisorylock.New(pool, name, advisorylock.WithHooks(newReferenceHook(b, recordingTP, mp, plain)))),
		section("otel", hooked(
			advisorylockotel.WithTracerProvider(recordingTP),
			advisorylockotel.WithMeterProvider(mp))),
		section("otel-noop", hooked(
			advisorylockotel.WithTracerProvider(tracenoop.NewTracerProvider()),
			advisorylockotel.WithMeterProvider(metricnoop.NewMeterProvider()))),
		// The global providers, with no SDK registered: they do nothing, but
		// the Hook cannot know it, and starts (non-recording) spans.
		section("otel-global-unset", hooked()),
	}, func(b *testing.B, medians []float64) {
		b.ReportMetric((medians[2]-medians[0])/(medians[1]-medians[0]), "otel-added/reference-added")
	})

	// Not interleaved: the batch processor's export goroutine works after a
	// call has returned, during the next call, of whichever case.
	batch := section("otel-batch", hooked(
		advisorylockotel.WithTracerProvider(batchTP),
		advisorylockotel.WithMeterProvider(mp)))
	b.Run(batch.Name, func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := batch.Call(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sectionHook is a hook that sees acquisitions and holds.
type sectionHook interface {
	advisorylock.Hook
	advisorylock.HoldHook
}

// hookSection calls h as a locked section of l does, with ctx: AcquireStart,
// AcquireEnd, HoldStart and HoldEnd, without taking or releasing l.
func hookSection(ctx context.Context, h sectionHook, l *advisorylock.Lock) {
	m := l.Mutex()
	actx := h.AcquireStart(ctx, m, advisorylock.AcquireStartData{})
	h.AcquireEnd(actx, m, advisorylock.AcquireEndData{Wait: time.Millisecond, Lock: l})
	hctx := h.HoldStart(ctx, l, advisorylock.HoldStartData{Wait: time.Millisecond, AcquireContext: actx})
	h.HoldEnd(hctx, l, advisorylock.HoldEndData{Held: time.Millisecond})
}

// BenchmarkHooks is the work of the hooks of one locked section alone,
// warm, out of the lock path: AcquireStart, AcquireEnd, HoldStart and HoldEnd
// called in a row on a lock held throughout, for the reference hook and the
// Hook, on the SDK's providers recording everything, each alone and
// interleaved.
func BenchmarkHooks(b *testing.B) {
	pool := pgtest.NewPool(b, pgtest.Require(b).CreateDatabase(b))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(discardProcessor{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	m := advisorylock.New(pool, "bench")
	l, err := m.Lock(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Unlock(context.Background()) })
	ctx := underRemoteParent()
	section := func(name string, h sectionHook) interleave.Case {
		return interleave.Case{Name: name, Call: func() error {
			hookSection(ctx, h, l)
			return nil
		}}
	}
	interleave.Bench(b, []interleave.Case{
		section("reference", newReferenceHook(b, tp, mp, m)),
		section("otel", advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp))),
	}, nil)
}
