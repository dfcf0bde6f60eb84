package advisorylockotel

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metric names.
const (
	// AcquireDurationName is the histogram of acquisitions' waits, in seconds.
	AcquireDurationName = "advisorylock.acquire.duration"
	// HoldDurationName is the histogram of the time locks were held, in
	// seconds.
	HoldDurationName = "advisorylock.hold.duration"
	// AcquisitionsName is the counter of acquisitions, by outcome.
	AcquisitionsName = "advisorylock.acquisitions"
	// HeldName is the up-down counter of locks held now.
	HeldName = "advisorylock.held"
	// LostName is the counter of locks lost while held.
	LostName = "advisorylock.lost"
)

// durationBuckets are the explicit bucket boundaries of both histograms, in
// seconds: a TryLock or an uncontended lock takes a round trip or two (100µs
// to a few ms on a LAN), a contended wait or a held lock seconds to minutes,
// a long job's lock up to an hour.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5,
	10, 30, 60,
	120, 300, 600,
	1800, 3600,
}

// DurationBuckets returns the explicit bucket boundaries, in seconds, of the
// advisorylock.acquire.duration and advisorylock.hold.duration histograms:
// from 100µs to an hour. The slice is a copy.
func DurationBuckets() []float64 { return slices.Clone(durationBuckets) }

// attrOptions is one attribute set as options for every kind of instrument,
// in slices built once, so that recording allocates nothing.
type attrOptions struct {
	add     []metric.AddOption
	record  []metric.RecordOption
	observe []metric.ObserveOption
}

func newAttrOptions(attrs ...attribute.KeyValue) attrOptions {
	o := metric.WithAttributeSet(attribute.NewSet(attrs...))
	return attrOptions{add: []metric.AddOption{o}, record: []metric.RecordOption{o}, observe: []metric.ObserveOption{o}}
}

// metrics are a Hook's instruments and the attribute sets they record with.
//
// The two histograms and the lost counter are synchronous instruments. The
// acquisitions counter and the held up-down counter are, by default,
// asynchronous: the lock path adds to atomic counters, one per attribute set,
// which a callback reports when the metrics are collected, so that the
// measurements cost next to nothing. With WithMetricLockName their attribute
// sets are not known in advance, and they are synchronous instruments.
type metrics struct {
	acquireDuration metric.Float64Histogram
	holdDuration    metric.Float64Histogram
	lost            metric.Int64Counter

	// With lock names: synchronous instruments. Otherwise nil.
	acquisitions metric.Int64Counter
	held         metric.Int64UpDownCounter

	// Without lock names: the counts the callback reports.
	acquisitionCounts [2][2][2][len(outcomes)]atomic.Int64
	heldCounts        [2][2]atomic.Int64
	heldSeen          [2][2]atomic.Bool // reported once used, zero included

	// The default attribute sets, indexed by mode, scope and, for
	// acquisitions, try and outcome.
	lock    [2][2]attrOptions
	acquire [2][2][2][len(outcomes)]attrOptions
}

// holdMetrics is what a hold's measurements need: the hold's attribute set
// and where its count of held locks is.
type holdMetrics struct {
	attrOptions
	mode, scope int
}

func newMetrics(mp metric.MeterProvider, withNames bool) *metrics {
	meter := mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	m := &metrics{}
	for mi, mode := range modeAttributes {
		for si, scope := range scopeAttributes {
			m.lock[mi][si] = newAttrOptions(mode, scope)
			for ti, try := range []bool{false, true} {
				for oi := range outcomes {
					m.acquire[mi][si][ti][oi] = newAttrOptions(mode, scope, TryKey.Bool(try), outcomeAttributes[oi])
				}
			}
		}
	}

	var err error
	m.acquireDuration, err = meter.Float64Histogram(AcquireDurationName,
		metric.WithUnit("s"),
		metric.WithDescription("Time taken to acquire an advisory lock, waiting included, whatever the outcome."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	handle(err)
	if m.acquireDuration == nil {
		m.acquireDuration = noop.Float64Histogram{}
	}
	m.holdDuration, err = meter.Float64Histogram(HoldDurationName,
		metric.WithUnit("s"),
		metric.WithDescription("Time an advisory lock was held, until it was released or its loss noticed."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	handle(err)
	if m.holdDuration == nil {
		m.holdDuration = noop.Float64Histogram{}
	}
	m.lost, err = meter.Int64Counter(LostName,
		metric.WithUnit("{lock}"),
		metric.WithDescription("Advisory locks lost while held: their session ended or stopped answering."))
	handle(err)
	if m.lost == nil {
		m.lost = noop.Int64Counter{}
	}

	const (
		acquisitionsUnit = "{acquisition}"
		acquisitionsDesc = "Acquisitions of advisory locks, by outcome."
		heldUnit         = "{lock}"
		heldDesc         = "Advisory locks held now."
	)
	if withNames {
		m.acquisitions, err = meter.Int64Counter(AcquisitionsName,
			metric.WithUnit(acquisitionsUnit), metric.WithDescription(acquisitionsDesc))
		handle(err)
		if m.acquisitions == nil {
			m.acquisitions = noop.Int64Counter{}
		}
		m.held, err = meter.Int64UpDownCounter(HeldName,
			metric.WithUnit(heldUnit), metric.WithDescription(heldDesc))
		handle(err)
		if m.held == nil {
			m.held = noop.Int64UpDownCounter{}
		}
		return m
	}
	acquisitions, err := meter.Int64ObservableCounter(AcquisitionsName,
		metric.WithUnit(acquisitionsUnit), metric.WithDescription(acquisitionsDesc))
	handle(err)
	held, err := meter.Int64ObservableUpDownCounter(HeldName,
		metric.WithUnit(heldUnit), metric.WithDescription(heldDesc))
	handle(err)
	if acquisitions != nil && held != nil {
		_, err = meter.RegisterCallback(m.observe(acquisitions, held), acquisitions, held)
		handle(err)
	}
	return m
}

// observe returns the callback reporting the counts of acquisitions and of
// locks held.
func (m *metrics) observe(acquisitions metric.Int64ObservableCounter, held metric.Int64ObservableUpDownCounter) metric.Callback {
	return func(_ context.Context, o metric.Observer) error {
		for mi := range m.acquisitionCounts {
			for si := range m.acquisitionCounts[mi] {
				for ti := range m.acquisitionCounts[mi][si] {
					for oi := range m.acquisitionCounts[mi][si][ti] {
						if n := m.acquisitionCounts[mi][si][ti][oi].Load(); n != 0 {
							o.ObserveInt64(acquisitions, n, m.acquire[mi][si][ti][oi].observe...)
						}
					}
				}
				if m.heldSeen[mi][si].Load() {
					o.ObserveInt64(held, m.heldCounts[mi][si].Load(), m.lock[mi][si].observe...)
				}
			}
		}
		return nil
	}
}

func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}

// acquired records an acquisition, of outcome outcomes[oi]. The histogram
// gets ctx, which holds the acquisition's span, for exemplars.
func (m *metrics) acquired(ctx context.Context, a *acquireContext, oi int, wait time.Duration) {
	ti := 0
	if a.try {
		ti = 1
	}
	if m.acquisitions == nil {
		m.acquisitionCounts[a.mode][a.scope][ti][oi].Add(1)
		m.acquireDuration.Record(ctx, wait.Seconds(), m.acquire[a.mode][a.scope][ti][oi].record...)
		return
	}
	o := m.acquire[a.mode][a.scope][ti][oi]
	if name := a.ids.name(); name.Valid() {
		o = newAttrOptions(modeAttributes[a.mode], scopeAttributes[a.scope], TryKey.Bool(a.try), outcomeAttributes[oi], name)
	}
	m.acquireDuration.Record(ctx, wait.Seconds(), o.record...)
	m.acquisitions.Add(ctx, 1, o.add...)
}

// holdStarted counts a lock held, and returns what the hold's other
// measurements need. name is the lock's name attribute, or invalid for none.
func (m *metrics) holdStarted(ctx context.Context, mode, scope int, name attribute.KeyValue) holdMetrics {
	h := holdMetrics{attrOptions: m.lock[mode][scope], mode: mode, scope: scope}
	if m.held == nil {
		if !m.heldSeen[mode][scope].Load() {
			m.heldSeen[mode][scope].Store(true)
		}
		m.heldCounts[mode][scope].Add(1)
		return h
	}
	if name.Valid() {
		h.attrOptions = newAttrOptions(modeAttributes[mode], scopeAttributes[scope], name)
	}
	m.held.Add(ctx, 1, h.add...)
	return h
}

// holdEnded counts a lock no longer held and records how long it was.
func (m *metrics) holdEnded(ctx context.Context, h holdMetrics, held time.Duration) {
	if m.held == nil {
		m.heldCounts[h.mode][h.scope].Add(-1)
	} else {
		m.held.Add(ctx, -1, h.add...)
	}
	m.holdDuration.Record(ctx, held.Seconds(), h.record...)
}

// lockLost counts a lock lost.
func (m *metrics) lockLost(ctx context.Context, h holdMetrics) {
	m.lost.Add(ctx, 1, h.add...)
}
