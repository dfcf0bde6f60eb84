package advisorylockotel

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/lockid"
)

// A Hook traces and measures the locks of the Mutexes it is given to (through
// advisorylock.WithHooks). It implements advisorylock.Hook,
// advisorylock.HoldHook, advisorylock.LostHook and advisorylock.RetryHook. It is safe for concurrent
// use, and one Hook may serve any number of Mutexes.
//
// A Hook keeps its spans in the contexts it returns, under keys of its own,
// so several Hooks (say, for two TracerProviders) can be combined with
// advisorylock.MultiHook. A nil or zero Hook records nothing; create one with
// NewHook.
type Hook struct {
	tracer     trace.Tracer // nil: no tracing
	metrics    *metrics     // nil: no metrics
	names      LockNamePolicy
	metricName bool
	keys       [2]any    // sectionKey{h, false} and {h, true}, boxed once
	locks      lockCache // what each lock is recorded with, built once per lock
}

var (
	_ advisorylock.Hook      = (*Hook)(nil)
	_ advisorylock.HoldHook  = (*Hook)(nil)
	_ advisorylock.LostHook  = (*Hook)(nil)
	_ advisorylock.RetryHook = (*Hook)(nil)
)

// NewHook returns a Hook configured by opts. It creates its tracer and its
// instruments once, here: from the providers given by WithTracerProvider and
// WithMeterProvider, or else from the global ones. An instrument that cannot
// be created is reported to otel.Handle and replaced by one that records
// nothing. NewHook does no I/O.
//
// The no-op providers of go.opentelemetry.io/otel/trace/noop and
// go.opentelemetry.io/otel/metric/noop are recognised: with both, the Hook does
// nothing at all.
func NewHook(opts ...Option) *Hook {
	c := newConfig(opts)
	tp, mp := c.tp, c.mp
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	h := &Hook{names: c.names, metricName: c.metricName}
	h.keys = [2]any{sectionKey{h, false}, sectionKey{h, true}}
	if !isNoopTracerProvider(tp) {
		h.tracer = tp.Tracer(ScopeName,
			trace.WithInstrumentationVersion(Version),
			trace.WithSchemaURL(semconv.SchemaURL))
	}
	if !isNoopMeterProvider(mp) {
		h.metrics = newMetrics(mp, c.metricName)
	}
	return h
}

func isNoopTracerProvider(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return true
	}
	return false
}

func isNoopMeterProvider(mp metric.MeterProvider) bool {
	switch mp.(type) {
	case metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return true
	}
	return false
}

// off reports whether h records nothing.
func (h *Hook) off() bool {
	return h == nil || (h.tracer == nil && h.metrics == nil)
}

// Span start options, the same for every span: the attributes are set as
// each span ends.
var (
	acquireStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	holdStart    = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
)

// section is what a Hook keeps of one acquisition and, once the lock is
// held, of its hold: the contexts AcquireStart and HoldStart return, in one
// allocation, the section's only one besides the SDK's.
type section struct {
	lock    *lockTelemetry
	try     bool
	acquire spanContext           // returned by AcquireStart
	hold    spanContext           // returned by HoldStart
	scratch [1]attribute.KeyValue // for SetAttributes, without allocating
}

// spanContext is a context a Hook returns: ctx with one of the Hook's spans,
// and the section it belongs to, found under key.
type spanContext struct {
	context.Context
	key     any // one of the Hook's keys
	section *section
	span    trace.Span // nil without tracing
}

// sectionKey finds a Hook's section in the contexts it returns. It holds the
// Hook, so that each Hook finds its own when several Hooks see the same
// contexts. A Hook boxes its two keys once, in NewHook: a key made for each
// lookup would be boxed for each.
type sectionKey struct {
	h    *Hook
	hold bool // the context HoldStart returned, not AcquireStart's
}

// Value returns c's section for c's key.
func (c *spanContext) Value(key any) any {
	if key == c.key {
		return c.section
	}
	return c.Context.Value(key)
}

// section returns h's section in ctx, from AcquireStart's context or, with
// hold, HoldStart's; or nil, as when h records nothing.
func (h *Hook) section(ctx context.Context, hold bool) *section {
	if h.off() || ctx == nil {
		return nil
	}
	s, _ := ctx.Value(h.keys[boolIndex(hold)]).(*section)
	return s
}

// AcquireStart starts the acquisition's span, a client span named
// AcquireSpanName, child of the span in ctx, and returns ctx with it. It
// implements advisorylock.Hook.
func (h *Hook) AcquireStart(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireStartData) context.Context {
	if h.off() {
		return ctx
	}
	var span trace.Span
	recording := false
	if h.tracer != nil {
		ctx, span = h.tracer.Start(ctx, AcquireSpanName, acquireStart...)
		if recording = span.IsRecording(); !recording && h.metrics == nil {
			return ctx // nothing to record
		}
	}
	s := &section{lock: h.telemetry(m), try: data.Try}
	if recording && data.Timeout != 0 {
		span.SetAttributes(append(s.scratch[:0], TimeoutKey.Float64(max(data.Timeout.Seconds(), 0)))...)
	}
	s.acquire = spanContext{Context: ctx, key: h.keys[0], section: s, span: span}
	return &s.acquire
}

// AcquireEnd ends the acquisition's span with its attributes and outcome,
// and records the acquisition's metrics. A lock acquired, or found busy by
// TryLock, leaves the span's status unset; any other outcome sets it to
// error. It implements advisorylock.Hook.
func (h *Hook) AcquireEnd(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	s := h.section(ctx, false)
	if s == nil {
		return // nothing to record, or not started by h
	}
	ti, oi := boolIndex(s.try), outcomeIndex(data.Outcome)
	h.end(s.acquire.span, m, withToken(s.lock.acquireAttributes(ti, oi), data.Token), errorType(data.Outcome, data.Err), data.Err)
	if h.metrics != nil {
		h.metrics.acquired(ctx, s.lock, ti, oi, data.Wait)
	}
}

// HoldStart starts the hold's span, an internal span named HoldSpanName, child
// of the span in ctx (the caller's context), and returns ctx with it:
// WithLock's function runs under it. When ctx has no span, the hold span
// starts a trace of its own, linked to the acquisition's span. HoldStart
// counts the lock in advisorylock.held. It implements advisorylock.HoldHook.
func (h *Hook) HoldStart(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldStartData) context.Context {
	if h.off() {
		return ctx
	}
	s := h.section(data.AcquireContext, false)
	var span trace.Span
	if h.tracer != nil {
		opts := holdStart
		// With a span in the caller's context, the acquire and hold spans
		// are siblings under it; without, each starts a trace, and a link
		// relates them.
		if s != nil && s.acquire.span != nil && s.acquire.span.SpanContext().IsValid() && !trace.SpanContextFromContext(ctx).IsValid() {
			opts = append(opts[:len(opts):len(opts)], trace.WithLinks(trace.Link{SpanContext: s.acquire.span.SpanContext()}))
		}
		ctx, span = h.tracer.Start(ctx, HoldSpanName, opts...)
		if !span.IsRecording() && h.metrics == nil {
			return ctx // nothing to record
		}
	}
	if s == nil {
		s = &section{lock: h.telemetry(l.Mutex())}
	}
	s.hold = spanContext{Context: ctx, key: h.keys[1], section: s, span: span}
	if h.metrics != nil {
		h.metrics.holdStarted(ctx, s.lock)
	}
	return &s.hold
}

// HoldEnd ends the hold's span with its attributes, and records the hold's
// metrics. A lost lock, or a release that failed, sets the span's status to
// error. It implements advisorylock.HoldHook.
func (h *Hook) HoldEnd(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldEndData) {
	s := h.section(ctx, true)
	if s == nil {
		return // nothing to record, or not started by h
	}
	attrs, typ := withToken(s.lock.attrs, l.Token()), ""
	if data.Lost {
		attrs = append(attrs[:len(attrs):len(attrs)], LostKey.Bool(true))
	}
	if data.Err != nil {
		typ = errorType(advisorylock.OutcomeError, data.Err)
	}
	h.end(s.hold.span, l.Mutex(), attrs, typ, data.Err)
	if h.metrics != nil {
		h.metrics.holdEnded(ctx, s.lock, data.Held)
	}
}

// LockLost adds the event LostEventName to the hold's span and counts the
// loss in advisorylock.lost. The span itself ends, with an error status, in
// the HoldEnd that follows. It implements advisorylock.LostHook.
func (h *Hook) LockLost(ctx context.Context, l *advisorylock.Lock, data advisorylock.LostData) {
	s := h.section(ctx, true)
	if s == nil {
		return // nothing to record, or not started by h
	}
	if s.hold.span != nil {
		s.hold.span.AddEvent(LostEventName, lostEvent...)
	}
	if h.metrics != nil {
		h.metrics.lockLost(ctx, s.lock)
	}
}

// withToken returns attrs with a fenced lock's token, in a slice of its own:
// attrs are shared. Without a token (0), attrs as they are.
func withToken(attrs []attribute.KeyValue, token int64) []attribute.KeyValue {
	if token == 0 || attrs == nil {
		return attrs
	}
	return append(attrs[:len(attrs):len(attrs)], TokenKey.Int64(token))
}

// AcquireRetry adds the event RetryEventName to the acquisition's span and
// counts the retry in advisorylock.retries. It implements
// advisorylock.RetryHook.
func (h *Hook) AcquireRetry(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireRetryData) {
	s := h.section(ctx, false)
	if s == nil {
		return // nothing to record, or not started by h
	}
	if s.acquire.span != nil && s.acquire.span.IsRecording() {
		s.acquire.span.AddEvent(RetryEventName, trace.WithAttributes(
			RetryKey.Int(data.Retry),
			RetryDelayKey.Float64(data.Delay.Seconds()),
			semconv.ErrorTypeKey.String(errorType(advisorylock.OutcomeError, data.Err)),
		))
	}
	if h.metrics != nil {
		h.metrics.retried(ctx, s.lock)
	}
}

// lostEvent are the options of every lost event.
var lostEvent = []trace.EventOption{trace.WithAttributes(semconv.ErrorTypeKey.String(errorTypeLockLost))}

// end ends span, if any, a span of a lock of m. A span that records gets
// attrs, all in one call, so that the SDK copies them once; attrs are shared,
// never appended to in place. With an error.type typ, the span is marked
// failed with err, and gets typ and the SQLSTATE of a server error; its
// status description is err's text, with the lock's name replaced by its key
// unless the policy records names in full.
func (h *Hook) end(span trace.Span, m *advisorylock.Mutex, attrs []attribute.KeyValue, typ string, err error) {
	switch {
	case span == nil:
		return
	case !span.IsRecording():
	case typ == "":
		span.SetAttributes(attrs...)
	default:
		h.fail(span, m, attrs, typ, err)
	}
	span.End()
}

// fail sets attrs and the failure's on span, and its status: see end.
func (h *Hook) fail(span trace.Span, m *advisorylock.Mutex, attrs []attribute.KeyValue, typ string, err error) {
	attrs = append(attrs[:len(attrs):len(attrs)], semconv.ErrorTypeKey.String(typ))
	if code := sqlstate(err); code != "" {
		attrs = append(attrs, semconv.DBResponseStatusCode(code))
	}
	span.SetAttributes(attrs...)
	desc := typ
	if err != nil {
		desc = lockid.Redact(err.Error(), m, h.names)
	}
	span.SetStatus(codes.Error, desc)
}

// error.type values of this instrumentation, besides SQLSTATEs.
const (
	errorTypeTimeout  = "timeout"
	errorTypeCanceled = "canceled"
	errorTypeLockLost = "lock_lost"
)

// errorType classifies an outcome for error.type, with few values: none
// ("") for a lock acquired or found busy, which are not failures; the
// outcome's when it says more than "error"; "lock_lost"; the SQLSTATE of a
// server error; or "_OTHER".
func errorType(o advisorylock.Outcome, err error) string {
	switch o {
	case advisorylock.OutcomeAcquired, advisorylock.OutcomeBusy:
		return ""
	case advisorylock.OutcomeTimeout:
		return errorTypeTimeout
	case advisorylock.OutcomeCanceled:
		return errorTypeCanceled
	}
	if errors.Is(err, advisorylock.ErrLockLost) {
		return errorTypeLockLost
	}
	if code := sqlstate(err); code != "" {
		return code
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// sqlstate returns the SQLSTATE of the server error in err, or "".
func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
