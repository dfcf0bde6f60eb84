package advisorylockotel_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// sumPoint returns the value of the data point of an int64 sum whose
// attributes are exactly want, and whether there is one.
func sumPoint(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	set := attribute.NewSet(want...)
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T; want an int64 sum", m.Name, m.Data)
	}
	for _, p := range sum.DataPoints {
		if p.Attributes.Equals(&set) {
			return p.Value, true
		}
	}
	return 0, false
}

// histogramPoint returns the data point of a float64 histogram whose
// attributes are exactly want, and whether there is one.
func histogramPoint(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) (metricdata.HistogramDataPoint[float64], bool) {
	t.Helper()
	set := attribute.NewSet(want...)
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is a %T; want a float64 histogram", m.Name, m.Data)
	}
	for _, p := range h.DataPoints {
		if p.Attributes.Equals(&set) {
			return p, true
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

// awaitSum waits until the sum name with attributes want reaches value, or
// fails t after 10s.
func awaitSum(t *testing.T, reader *metric.ManualReader, name string, value int64, want ...attribute.KeyValue) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int64
		if m, ok := collect(t, reader)[name]; ok {
			got, _ = sumPoint(t, m, want...)
		}
		if got == value {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %d after 10s; want %d", name, want, got, value)
		}
		time.Sleep(5 * time.Millisecond) // polling the reader: there is nothing to wait on
	}
}

// The instruments count acquisitions by outcome, measure waits and holds, and
// follow the locks held and lost, with low-cardinality attributes.
func TestHook_metrics(t *testing.T) {
	t.Parallel()
	mp, reader := newMetering(t)
	dsn := pgtest.Database(t)
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	hook := advisorylockotel.NewHook(advisorylockotel.WithMeterProvider(mp), advisorylockotel.WithTracerProvider(tracenoop.NewTracerProvider()))
	const bound = 50 * time.Millisecond
	m := advisorylock.New(pool, "metrics", advisorylock.WithHooks(hook), advisorylock.WithTimeout(bound))

	mode, scope := advisorylockotel.LockModeKey.String("exclusive"), advisorylockotel.LockScopeKey.String("session")
	lockAttrs := []attribute.KeyValue{mode, scope}
	acq := func(try bool, outcome string) []attribute.KeyValue {
		return []attribute.KeyValue{mode, scope, advisorylockotel.TryKey.Bool(try), advisorylockotel.OutcomeKey.String(outcome)}
	}

	// Acquired, and held while fn runs.
	_, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
		held, ok := sumPoint(t, collect(t, reader)[advisorylockotel.HeldName], lockAttrs...)
		if !ok || held != 1 {
			t.Errorf("%s while held = %d (%v); want 1", advisorylockotel.HeldName, held, ok)
		}
		return 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Busy and timed out, while another process holds the lock; then
	// acquired and lost.
	contend(t, m, other, false)
	awaitSum(t, reader, advisorylockotel.HeldName, 0, lockAttrs...)

	ms := collect(t, reader)
	for _, name := range []string{advisorylockotel.AcquireDurationName, advisorylockotel.HoldDurationName, advisorylockotel.AcquisitionsName, advisorylockotel.HeldName, advisorylockotel.LostName} {
		if _, ok := ms[name]; !ok {
			t.Fatalf("no metric %s", name)
		}
	}
	for _, name := range []string{advisorylockotel.AcquireDurationName, advisorylockotel.HoldDurationName} {
		if u := ms[name].Unit; u != "s" {
			t.Errorf("%s unit = %q; want s", name, u)
		}
	}
	if s := ms[advisorylockotel.AcquisitionsName].Data.(metricdata.Sum[int64]); !s.IsMonotonic {
		t.Errorf("%s is not monotonic; want a counter", advisorylockotel.AcquisitionsName)
	}
	if s := ms[advisorylockotel.HeldName].Data.(metricdata.Sum[int64]); s.IsMonotonic {
		t.Errorf("%s is monotonic; want an up-down counter", advisorylockotel.HeldName)
	}

	counts := []struct {
		try     bool
		outcome string
		n       int64
		minSum  float64
	}{
		{false, "acquired", 2, 0},
		{true, "busy", 1, 0},
		{false, "timeout", 1, bound.Seconds()},
	}
	for _, c := range counts {
		a := acq(c.try, c.outcome)
		if got, _ := sumPoint(t, ms[advisorylockotel.AcquisitionsName], a...); got != c.n {
			t.Errorf("%s%v = %d; want %d", advisorylockotel.AcquisitionsName, a, got, c.n)
		}
		p, ok := histogramPoint(t, ms[advisorylockotel.AcquireDurationName], a...)
		if !ok || p.Count != uint64(c.n) || p.Sum < c.minSum {
			t.Errorf("%s%v: count %d, sum %v; want count %d, sum at least %v", advisorylockotel.AcquireDurationName, a, p.Count, p.Sum, c.n, c.minSum)
		}
		if !slices.Equal(p.Bounds, advisorylockotel.DurationBuckets()) {
			t.Errorf("%s bounds = %v; want %v", advisorylockotel.AcquireDurationName, p.Bounds, advisorylockotel.DurationBuckets())
		}
	}
	if n := len(ms[advisorylockotel.AcquisitionsName].Data.(metricdata.Sum[int64]).DataPoints); n != len(counts) {
		t.Errorf("%s has %d series; want %d", advisorylockotel.AcquisitionsName, n, len(counts))
	}
	if p, ok := histogramPoint(t, ms[advisorylockotel.HoldDurationName], lockAttrs...); !ok || p.Count != 2 || p.Sum <= 0 {
		t.Errorf("%s: count %d, sum %v; want 2 holds, sum > 0", advisorylockotel.HoldDurationName, p.Count, p.Sum)
	}
	if got, _ := sumPoint(t, ms[advisorylockotel.LostName], lockAttrs...); got != 1 {
		t.Errorf("%s = %d; want 1", advisorylockotel.LostName, got)
	}
}

// The bucket boundaries run from under a millisecond to minutes and more, in
// increasing order, and DurationBuckets hands out a copy.
func TestDurationBuckets(t *testing.T) {
	t.Parallel()
	b := advisorylockotel.DurationBuckets()
	if !slices.IsSorted(b) || b[0] > 0.0005 || b[len(b)-1] < 600 {
		t.Errorf("DurationBuckets() = %v; want increasing, from under 0.5ms to at least 10 minutes", b)
	}
	b[0] = 42
	if advisorylockotel.DurationBuckets()[0] == 42 {
		t.Error("changing the slice DurationBuckets returned changed the next one")
	}
}
