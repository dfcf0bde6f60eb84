package advisorylockslog

import (
	"log/slog"
	"time"

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
	names  LockNamePolicy
	wait   time.Duration // the wait threshold; negative: none
	hold   time.Duration // the hold threshold; negative: none
	levels [numEvents]slog.Level
}

func newConfig(opts []Option) config {
	c := config{
		wait:   time.Second,
		hold:   -1,
		levels: [numEvents]slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelInfo, slog.LevelError, slog.LevelError, slog.LevelWarn},
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// LockNamePolicy says how a lock's name appears in the records. Lock names
// can carry identifiers of customers or other people ("invoice-customer-4711"),
// which do not belong in a log by default. Its String method returns
// "hashed", "full" or "omitted". The OpenTelemetry hook
// (github.com/advisorylock/advisorylock/otel) takes the same policies.
type LockNamePolicy = lockid.Policy

const (
	// LockNameHashed (the default) logs the first 16 hexadecimal digits of
	// the SHA-256 of the name (`printf %s "$name" | sha256sum | cut -c1-16`)
	// as lock.name_hash, instead of the name: the records of one lock can be
	// grouped, and found by anyone who knows the name, without the name being
	// shown. The hash is made of the same bytes as a named lock's key, which
	// every record carries anyway.
	LockNameHashed LockNamePolicy = lockid.Hashed
	// LockNameFull logs the name as it is, as lock.name, and leaves it in the
	// errors' texts.
	LockNameFull LockNamePolicy = lockid.Full
	// LockNameOmitted logs nothing of the name. The lock's key is still
	// logged.
	LockNameOmitted LockNamePolicy = lockid.Omitted
)

// WithLockName sets how a lock's name appears in the records: LockNameHashed
// (the default), LockNameFull or LockNameOmitted. A value that is none of them
// is ignored. Locks made with advisorylock.NewWithKey have no name; only their
// key is logged.
func WithLockName(p LockNamePolicy) Option {
	return optionFunc(func(c *config) {
		if p.Valid() {
			c.names = p
		}
	})
}

// WithWaitThreshold sets the wait from which an acquisition is logged as
// EventWait: one second unless set. Zero logs every acquisition (but a busy
// TryLock's, and a timeout's or a failure's, which are logged as their own
// events); a negative d, none.
func WithWaitThreshold(d time.Duration) Option {
	return optionFunc(func(c *config) { c.wait = d })
}

// WithHoldThreshold sets the time held from which a lock is logged as
// EventHold when it is released. Unless set, no hold is logged. Zero logs
// every release; a negative d, none. A lock lost is logged as EventLost
// whatever the time it was held.
func WithHoldThreshold(d time.Duration) Option {
	return optionFunc(func(c *config) { c.hold = d })
}

// WithLevel sets the level of the records of event e. An e that is no Event
// is ignored. A level the logger does not enable turns the event off, at no
// cost.
func WithLevel(e Event, level slog.Level) Option {
	return optionFunc(func(c *config) {
		if e < numEvents {
			c.levels[e] = level
		}
	})
}
