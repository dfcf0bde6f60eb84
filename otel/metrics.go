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
	// RetriesName is the counter of waits started again after they lost
	// their connection before the grant.
	RetriesName = "advisorylock.retries"
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
// The two histograms and the lost and retries counters are synchronous
// instruments. The
// acquisitions counter and the held up-down counter are, by default,
// asynchronous: the lock path adds to atomic counters, one per attribute set,
// which a callback reports when the metrics are collected, so that the
// measurements cost next to nothing. With WithMetricLockName their attribute
// sets are not known in advance, and they are synchronous instruments.
type metrics struct {
	acquireDuration metric.Float64Histogram
	holdDuration    metric.Float64Histogram
	lost            metric.Int64Counter
	retries         metric.Int64Counter

	// With lock names: synchronous instruments. Otherwise nil.
	acquisitions metric.Int64Counter
	held         metric.Int64UpDownCounter

	// Without lock names: the counts the callback reports.
	acquisitionCounts [2][2][len(tries)][len(outcomes)]atomic.Int64
	heldCounts        [2][2]atomic.Int64
	heldSeen          [2][2]atomic.Bool // reported once used, zero included

	// The default attribute sets, indexed by mode, scope and, for
	// acquisitions, try and outcome.
	lock    [2][2]attrOptions
	acquire [2][2][len(tries)][len(outcomes)]attrOptions
}

// lockSets are a lock's metric attribute sets.
type lockSets struct {
	acquire *[len(tries)][len(outcomes)]attrOptions // by try and outcome
	hold    *attrOptions
}

// lockSets returns the attribute sets of a lock of mode and scope: with its
// name attribute, when valid, sets of its own, else the shared ones.
func (m *metrics) lockSets(mode, scope int, name attribute.KeyValue) lockSets {
	if !name.Valid() {
		return lockSets{acquire: &m.acquire[mode][scope], hold: &m.lock[mode][scope]}
	}
	s := lockSets{acquire: new([len(tries)][len(outcomes)]attrOptions), hold: new(attrOptions)}
	*s.hold = newAttrOptions(modeAttributes[mode], scopeAttributes[scope], name)
	for ti, try := range tries {
		for oi := range outcomes {
			s.acquire[ti][oi] = newAttrOptions(modeAttributes[mode], scopeAttributes[scope], TryKey.Bool(try), outcomeAttributes[oi], name)
		}
	}
	return s
}

func newMetrics(mp metric.MeterProvider, withNames bool) *metrics {
	meter := mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	m := &metrics{}
	for mi, mode := range modeAttributes {
		for si, scope := range scopeAttributes {
			m.lock[mi][si] = newAttrOptions(mode, scope)
			for ti, try := range tries {
				for oi := range outcomes {
					m.acquire[mi][si][ti][oi] = newAttrOptions(mode, scope, TryKey.Bool(try), outcomeAttributes[oi])
				}
			}
		}
	}

	m.acquireDuration = durationHistogram(meter, AcquireDurationName,
		"Time taken to acquire an advisory lock, waiting included, whatever the outcome.")
	m.holdDuration = durationHistogram(meter, HoldDurationName,
		"Time an advisory lock was held, until it was released or its loss noticed.")
	lost, err := meter.Int64Counter(LostName,
		metric.WithUnit("{lock}"),
		metric.WithDescription("Advisory locks lost while held: their session ended or stopped answering."))
	m.lost = orNoop(lost, err, metric.Int64Counter(noop.Int64Counter{}))
	retries, err := meter.Int64Counter(RetriesName,
		metric.WithUnit("{retry}"),
		metric.WithDescription("Waits for advisory locks started again after their connection ended before the grant."))
	m.retries = orNoop(retries, err, metric.Int64Counter(noop.Int64Counter{}))

	const (
		acquisitionsUnit = "{acquisition}"
		acquisitionsDesc = "Acquisitions of advisory locks, by outcome."
		heldUnit         = "{lock}"
		heldDesc         = "Advisory locks held now."
	)
	if withNames {
		acquisitions, err := meter.Int64Counter(AcquisitionsName,
			metric.WithUnit(acquisitionsUnit), metric.WithDescription(acquisitionsDesc))
		m.acquisitions = orNoop(acquisitions, err, metric.Int64Counter(noop.Int64Counter{}))
		held, err := meter.Int64UpDownCounter(HeldName,
			metric.WithUnit(heldUnit), metric.WithDescription(heldDesc))
		m.held = orNoop(held, err, metric.Int64UpDownCounter(noop.Int64UpDownCounter{}))
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

// durationHistogram returns the histogram of durations called name.
func durationHistogram(meter metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := meter.Float64Histogram(name,
		metric.WithUnit("s"),
		metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	return orNoop(h, err, metric.Float64Histogram(noop.Float64Histogram{}))
}

// orNoop returns the instrument a Meter returned with err, or noop when
// there is none. err goes to otel.Handle.
func orNoop[I any](instrument I, err error, noop I) I {
	handle(err)
	if any(instrument) == nil {
		return noop
	}
	return instrument
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

// acquired records an acquisition of lock, TryLock's if ti is 1, of outcome
// outcomes[oi]. The histogram gets ctx, which holds the acquisition's span,
// for exemplars.
func (m *metrics) acquired(ctx context.Context, lock *lockTelemetry, ti, oi int, wait time.Duration) {
	o := &lock.sets.acquire[ti][oi]
	m.acquireDuration.Record(ctx, wait.Seconds(), o.record...)
	if m.acquisitions != nil {
		m.acquisitions.Add(ctx, 1, o.add...)
	} else {
		m.acquisitionCounts[lock.mode][lock.scope][ti][oi].Add(1)
	}
}

// holdStarted counts a lock held.
func (m *metrics) holdStarted(ctx context.Context, lock *lockTelemetry) {
	if m.held != nil {
		m.held.Add(ctx, 1, lock.sets.hold.add...)
		return
	}
	if seen := &m.heldSeen[lock.mode][lock.scope]; !seen.Load() {
		seen.Store(true)
	}
	m.heldCounts[lock.mode][lock.scope].Add(1)
}

// holdEnded counts a lock no longer held and records how long it was.
func (m *metrics) holdEnded(ctx context.Context, lock *lockTelemetry, held time.Duration) {
	if m.held != nil {
		m.held.Add(ctx, -1, lock.sets.hold.add...)
	} else {
		m.heldCounts[lock.mode][lock.scope].Add(-1)
	}
	m.holdDuration.Record(ctx, held.Seconds(), lock.sets.hold.record...)
}

// lockLost counts a lock lost.
func (m *metrics) lockLost(ctx context.Context, lock *lockTelemetry) {
	m.lost.Add(ctx, 1, lock.sets.hold.add...)
}

// retried counts a wait started again.
func (m *metrics) retried(ctx context.Context, lock *lockTelemetry) {
	m.retries.Add(ctx, 1, lock.sets.hold.add...)
}
