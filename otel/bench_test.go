package advisorylockotel_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/advisorylock/advisorylock"
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

// BenchmarkWithLock is an uncontended session-scoped locked section, on one
// pool and one lock:
//
//   - nohooks: no hooks, the floor the others are a ratio to;
//   - otel-noop: the Hook on the no-op providers of the trace/noop and
//     metric/noop packages, which it recognises;
//   - otel-global-unset: the Hook on the global providers, with no SDK
//     registered, which do nothing but are not recognised;
//   - otel-recording: the Hook on the SDK's providers, sampling and recording
//     every span (dropped by a synchronous processor) and every measurement
//     (read by a manual reader);
//   - otel-recording-batch: the same with the SDK's BatchSpanProcessor (and an
//     exporter that drops), as production would run, which adds the SDK's
//     hand-off of each span to its export goroutine;
//   - interleaved: the cases but the batch one taking turns call by call, in an order
//     shuffled each round, so that a machine whose load drifts (the server
//     shares its cores) weighs on each alike. It reports each one's median
//     time per call and the Hook's ratios to no hooks.
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

	hooked := func(opts ...advisorylockotel.Option) []advisorylock.Option {
		return []advisorylock.Option{advisorylock.WithHooks(advisorylockotel.NewHook(opts...))}
	}
	cases := []struct {
		name string
		opts []advisorylock.Option
	}{
		{"nohooks", nil},
		{"otel-noop", hooked(
			advisorylockotel.WithTracerProvider(tracenoop.NewTracerProvider()),
			advisorylockotel.WithMeterProvider(metricnoop.NewMeterProvider()))},
		// The global providers, with no SDK registered: they do nothing, but
		// the Hook cannot know it, and starts (non-recording) spans.
		{"otel-global-unset", hooked()},
		{"otel-recording", hooked(
			advisorylockotel.WithTracerProvider(recordingTP),
			advisorylockotel.WithMeterProvider(mp))},
		{"otel-recording-batch", hooked(
			advisorylockotel.WithTracerProvider(batchTP),
			advisorylockotel.WithMeterProvider(mp))},
	}
	fn := func(context.Context) (int, error) { return 1, nil }
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m := advisorylock.New(pool, "bench", c.opts...)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := advisorylock.WithLock(ctx, m, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("interleaved", func(b *testing.B) {
		// Not the batch case: its export goroutine works after a call has
		// returned, during the next call, of whichever case.
		turns := cases[:4]
		var ms []*advisorylock.Mutex
		for _, c := range turns {
			ms = append(ms, advisorylock.New(pool, "bench", c.opts...))
		}
		durations := make([][]time.Duration, len(turns))
		rng := rand.New(rand.NewPCG(1, 2))
		order := []int{0, 1, 2, 3}
		ctx := context.Background()
		i := 0
		for b.Loop() {
			if i%len(order) == 0 {
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			}
			k := order[i%len(order)]
			i++
			start := time.Now()
			if _, err := advisorylock.WithLock(ctx, ms[k], fn); err != nil {
				b.Fatal(err)
			}
			durations[k] = append(durations[k], time.Since(start))
		}
		medians := make([]float64, len(turns))
		for k, d := range durations {
			if len(d) == 0 {
				return
			}
			slices.Sort(d)
			medians[k] = float64(d[len(d)/2])
			b.ReportMetric(medians[k], turns[k].name+"-ns/op")
		}
		for k := 1; k < len(turns); k++ {
			b.ReportMetric(medians[k]/medians[0], turns[k].name+"/nohooks")
		}
	})
}
