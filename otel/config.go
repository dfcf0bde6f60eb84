package advisorylockotel

import (
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/advisorylock/advisorylock/internal/lockid"
)

// An Option configures NewHook. Options are applied in order; a later one
// overrides an earlier one. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is NewHook's resolved configuration.
type config struct {
	tp         trace.TracerProvider // nil: the global one
	mp         metric.MeterProvider // nil: the global one
	names      LockNamePolicy
	metricName bool
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithTracerProvider sets the TracerProvider the Hook's tracer comes from.
// Without it, or with nil, the global TracerProvider is used
// (otel.GetTracerProvider), which forwards to one registered later.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	})
}

// WithMeterProvider sets the MeterProvider the Hook's instruments come from.
// Without it, or with nil, the global MeterProvider is used
// (otel.GetMeterProvider), which forwards to one registered later.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	})
}

// LockNamePolicy says how a lock's name appears in telemetry. Lock names can
// carry identifiers of customers or other people ("invoice-customer-4711"),
// which do not belong in a tracing backend by default. Its String method
// returns "hashed", "full" or "omitted". The slog hook
// (github.com/advisorylock/advisorylock/slog) takes the same policies.
type LockNamePolicy = lockid.Policy

const (
	// LockNameHashed (the default) records HashLockName(name) under
	// LockNameHashKey instead of the name: spans of one lock can be grouped,
	// and found by anyone who knows the name, without the name being shown.
	// The hash is made of the same SHA-256 bytes as a named lock's key, which
	// every span records anyway, so it discloses nothing the key does not. Like
	// the key, it does not hide a name that can be guessed.
	LockNameHashed LockNamePolicy = lockid.Hashed
	// LockNameFull records the name as it is, under LockNameKey, and leaves it
	// in the error descriptions of spans.
	LockNameFull LockNamePolicy = lockid.Full
	// LockNameOmitted records nothing of the name. The lock's key is still
	// recorded.
	LockNameOmitted LockNamePolicy = lockid.Omitted
)

// WithLockName sets how a lock's name appears in spans, and in metrics when
// WithMetricLockName is set: LockNameHashed (the default), LockNameFull or
// LockNameOmitted. A value that is none of them is ignored. Locks made with
// advisorylock.NewWithKey have no name; only their key is recorded.
func WithLockName(p LockNamePolicy) Option {
	return optionFunc(func(c *config) {
		if p.Valid() {
			c.names = p
		}
	})
}

// WithMetricLockName adds the lock's name, as WithLockName renders it, to the
// attributes of every metric. It is off by default: each distinct name then
// makes a time series of each instrument, and names made of ids are
// unbounded. With it, the attribute sets are built for each lock the first
// time it is used, rather than once in NewHook, and the counts of
// acquisitions and of held locks are synchronous instruments.
func WithMetricLockName(on bool) Option {
	return optionFunc(func(c *config) { c.metricName = on })
}
