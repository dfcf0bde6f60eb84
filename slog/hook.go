package advisorylockslog

import (
	"context"
	"log/slog"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/lockid"
)

// A Hook logs the locks of the Mutexes it is given to (through
// advisorylock.WithHooks). It implements advisorylock.Hook,
// advisorylock.HoldHook, advisorylock.LostHook and advisorylock.RetryHook. It is safe for concurrent
// use, and one Hook may serve any number of Mutexes. A nil or zero Hook logs
// nothing; create one with NewHook.
type Hook struct {
	logger *slog.Logger // nil: slog.Default()
	cfg    config
	made   bool // by NewHook
}

var (
	_ advisorylock.Hook      = (*Hook)(nil)
	_ advisorylock.HoldHook  = (*Hook)(nil)
	_ advisorylock.LostHook  = (*Hook)(nil)
	_ advisorylock.RetryHook = (*Hook)(nil)
)

// NewHook returns a Hook that logs to logger, configured by opts. With a nil
// logger it logs to slog.Default(), whichever it is at the time of each
// record.
func NewHook(logger *slog.Logger, opts ...Option) *Hook {
	return &Hook{logger: logger, cfg: newConfig(opts), made: true}
}

// AcquireStart returns ctx: the Hook keeps nothing of an acquisition. It
// implements advisorylock.Hook.
func (h *Hook) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	return ctx
}

// AcquireEnd logs an acquisition that waited at least the wait threshold
// (EventWait), timed out (EventTimeout) or failed (EventError). It implements
// advisorylock.Hook.
func (h *Hook) AcquireEnd(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	if h == nil || !h.made {
		return
	}
	switch data.Outcome {
	case advisorylock.OutcomeBusy:
		// An answer, not an event.
	case advisorylock.OutcomeAcquired, advisorylock.OutcomeCanceled:
		if reaches(data.Wait, h.cfg.wait) {
			h.log(ctx, EventWait, m, data.Token, "wait", data.Wait, data.Outcome.String(), data.Err)
		}
	case advisorylock.OutcomeTimeout:
		h.log(ctx, EventTimeout, m, 0, "wait", data.Wait, "", data.Err)
	default:
		h.log(ctx, EventError, m, 0, "wait", data.Wait, "", data.Err)
	}
}

// HoldStart returns ctx: the Hook keeps nothing of a hold. It implements
// advisorylock.HoldHook.
func (h *Hook) HoldStart(ctx context.Context, _ *advisorylock.Lock, _ advisorylock.HoldStartData) context.Context {
	return ctx
}

// HoldEnd logs a lock released after being held at least the hold threshold
// (EventHold), or whose release failed (EventError). A lost lock is logged by
// LockLost. It implements advisorylock.HoldHook.
func (h *Hook) HoldEnd(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldEndData) {
	if h == nil || !h.made {
		return
	}
	switch {
	case data.Lost:
		// Logged by LockLost.
	case data.Err != nil:
		h.log(ctx, EventError, l.Mutex(), l.Token(), "held", data.Held, "", data.Err)
	case reaches(data.Held, h.cfg.hold):
		h.log(ctx, EventHold, l.Mutex(), l.Token(), "held", data.Held, "", nil)
	}
}

// LockLost logs a lock lost while held (EventLost). It implements
// advisorylock.LostHook.
func (h *Hook) LockLost(ctx context.Context, l *advisorylock.Lock, data advisorylock.LostData) {
	if h == nil || !h.made {
		return
	}
	h.log(ctx, EventLost, l.Mutex(), l.Token(), "held", data.Held, "", data.Err)
}

// AcquireRetry logs a wait that lost its connection before the grant and
// starts again (EventRetry), with which retry it is, the pause before it and
// why the previous attempt ended. It implements advisorylock.RetryHook.
func (h *Hook) AcquireRetry(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireRetryData) {
	if h == nil || !h.made {
		return
	}
	h.log(ctx, EventRetry, m, 0, "delay", data.Delay, "", data.Err, slog.Int("retry", data.Retry))
}

// reaches reports whether d reaches threshold; no d reaches a negative one.
func reaches(d, threshold time.Duration) bool {
	return threshold >= 0 && d >= threshold
}

// log logs a record of event e about a lock of m, with the lock's group, its
// fencing token unless 0, the duration d under durationKey, the outcome
// unless "", extra, and err unless nil, when the logger enables e's level.
// Until that is known, it builds nothing. The record has no source: its
// caller is the library, not the code that took the lock.
func (h *Hook) log(ctx context.Context, e Event, m *advisorylock.Mutex, token int64, durationKey string, d time.Duration, outcome string, err error, extra ...slog.Attr) {
	logger := h.logger
	if logger == nil {
		logger = slog.Default()
	}
	handler, level := logger.Handler(), h.cfg.levels[e]
	if !handler.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, e.String(), 0)
	r.AddAttrs(h.lockAttr(m))
	if token != 0 {
		r.AddAttrs(slog.Int64("token", token))
	}
	r.AddAttrs(slog.Duration(durationKey, d))
	if outcome != "" {
		r.AddAttrs(slog.String("outcome", outcome))
	}
	r.AddAttrs(extra...)
	if err != nil {
		r.AddAttrs(slog.String("err", lockid.Redact(err.Error(), m, h.cfg.names)))
	}
	_ = handler.Handle(ctx, r) // as slog.Logger does: a handler's error is its own
}

// lockAttr returns the group lock of a record about a lock of m: its key, its
// name as the policy says, its mode and its scope.
func (h *Hook) lockAttr(m *advisorylock.Mutex) slog.Attr {
	attrs := make([]slog.Attr, 0, 4)
	attrs = append(attrs, slog.String("key", m.Key().String()))
	switch name, hashed := lockid.Name(m, h.cfg.names); {
	case name == "":
	case hashed:
		attrs = append(attrs, slog.String("name_hash", name))
	default:
		attrs = append(attrs, slog.String("name", name))
	}
	attrs = append(attrs, slog.String("mode", m.Mode().String()), slog.String("scope", m.Scope().String()))
	return slog.GroupAttrs("lock", attrs...)
}
