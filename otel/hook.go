package advisorylockotel

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

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
)

// A Hook traces and measures the locks of the Mutexes it is given to (through
// advisorylock.WithHooks). It implements advisorylock.Hook,
// advisorylock.HoldHook and advisorylock.LostHook. It is safe for concurrent
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

	// Span start options, built once, by mode and scope (and try).
	acquireOpts [2][2][2][]trace.SpanStartOption
	holdOpts    [2][2][]trace.SpanStartOption
}

var (
	_ advisorylock.Hook     = (*Hook)(nil)
	_ advisorylock.HoldHook = (*Hook)(nil)
	_ advisorylock.LostHook = (*Hook)(nil)
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
	if !isNoopTracerProvider(tp) {
		h.tracer = tp.Tracer(ScopeName,
			trace.WithInstrumentationVersion(Version),
			trace.WithSchemaURL(semconv.SchemaURL))
	}
	if !isNoopMeterProvider(mp) {
		h.metrics = newMetrics(mp, c.metricName)
	}
	for mi, mode := range modeAttributes {
		for si, scope := range scopeAttributes {
			h.holdOpts[mi][si] = []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindInternal),
				trace.WithAttributes(semconv.DBSystemNamePostgreSQL, mode, scope),
			}
			for ti, try := range []bool{false, true} {
				h.acquireOpts[mi][si][ti] = []trace.SpanStartOption{
					trace.WithSpanKind(trace.SpanKindClient),
					trace.WithAttributes(semconv.DBSystemNamePostgreSQL, mode, scope, TryKey.Bool(try)),
				}
			}
		}
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

// acquireKey and holdKey find a Hook's state in the contexts it returns. They
// hold the Hook, so that each Hook finds its own when several Hooks see the
// same contexts.
type (
	acquireKey struct{ h *Hook }
	holdKey    struct{ h *Hook }
)

// lockIDs are the attributes naming a lock: its key and, as the policy says,
// its name. They are computed only when something records them.
type lockIDs struct {
	attrs [2]attribute.KeyValue // the key, then the name
	n     int                   // 0 until computed; 1 without a name
}

func (h *Hook) lockIDs(ids *lockIDs, m *advisorylock.Mutex) {
	if ids.n == 0 {
		ids.attrs[0], ids.n = LockKeyKey.String(keyString(m.Key())), 1
		if name := h.nameAttribute(m); name.Valid() {
			ids.attrs[1], ids.n = name, 2
		}
	}
}

// name returns the name attribute, or an invalid one.
func (ids *lockIDs) name() attribute.KeyValue {
	if ids.n < 2 {
		return attribute.KeyValue{}
	}
	return ids.attrs[1]
}

// acquireContext is the context AcquireStart returns: ctx with the
// acquisition's span, and what AcquireEnd and HoldStart need to know. One
// allocation carries it all.
type acquireContext struct {
	context.Context
	h           *Hook
	span        trace.Span // nil without tracing
	mode, scope int        // indexes in modeAttributes and scopeAttributes
	try         bool
	ids         lockIDs
	scratch     [4]attribute.KeyValue // for SetAttributes, without allocating
}

// Value returns c itself for c's Hook's acquireKey.
func (c *acquireContext) Value(key any) any {
	if k, ok := key.(acquireKey); ok && k.h == c.h {
		return c
	}
	return c.Context.Value(key)
}

// holdContext is the context HoldStart returns: ctx with the hold's span,
// and the attributes HoldEnd and LockLost record metrics with.
type holdContext struct {
	context.Context
	h       *Hook
	span    trace.Span // nil without tracing
	m       *advisorylock.Mutex
	metric  holdMetrics
	scratch [4]attribute.KeyValue // for SetAttributes, without allocating
}

// Value returns c itself for c's Hook's holdKey.
func (c *holdContext) Value(key any) any {
	if k, ok := key.(holdKey); ok && k.h == c.h {
		return c
	}
	return c.Context.Value(key)
}

// acquisition returns h's acquisition state in ctx, or nil.
func (h *Hook) acquisition(ctx context.Context) *acquireContext {
	if ctx == nil {
		return nil
	}
	c, _ := ctx.Value(acquireKey{h}).(*acquireContext)
	return c
}

// hold returns h's hold state in ctx, or nil.
func (h *Hook) hold(ctx context.Context) *holdContext {
	if ctx == nil {
		return nil
	}
	c, _ := ctx.Value(holdKey{h}).(*holdContext)
	return c
}

// AcquireStart starts the acquisition's span, a client span named
// AcquireSpanName, child of the span in ctx, and returns ctx with it. It
// implements advisorylock.Hook.
//
// The span starts with the attributes a sampler may look at: db.system.name,
// mode, scope and try. The lock's key and name, which take formatting, are
// added only to a span that records.
func (h *Hook) AcquireStart(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireStartData) context.Context {
	if h.off() {
		return ctx
	}
	mi, si, ti := modeIndex(m.Mode()), scopeIndex(m.Scope()), 0
	if data.Try {
		ti = 1
	}
	var span trace.Span
	if h.tracer != nil {
		ctx, span = h.tracer.Start(ctx, AcquireSpanName, h.acquireOpts[mi][si][ti]...)
		if !span.IsRecording() && h.metrics == nil {
			return ctx // nothing to record
		}
	}
	a := &acquireContext{Context: ctx, h: h, span: span, mode: mi, scope: si, try: data.Try}
	if span != nil && span.IsRecording() {
		h.lockIDs(&a.ids, m)
		attrs := append(a.scratch[:0], a.ids.attrs[:a.ids.n]...)
		if data.Timeout != 0 {
			attrs = append(attrs, TimeoutKey.Float64(max(data.Timeout.Seconds(), 0)))
		}
		span.SetAttributes(attrs...)
	}
	if h.metricName {
		h.lockIDs(&a.ids, m)
	}
	return a
}

// AcquireEnd ends the acquisition's span with its outcome and wait, and
// records the acquisition's metrics. A lock acquired, or found busy by
// TryLock, leaves the span's status unset; any other outcome sets it to
// error. It implements advisorylock.Hook.
func (h *Hook) AcquireEnd(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	if h.off() {
		return
	}
	a := h.acquisition(ctx)
	if a == nil {
		return // nothing to record, or not started by h
	}
	oi := outcomeIndex(data.Outcome)
	if a.span != nil {
		if a.span.IsRecording() {
			attrs := append(a.scratch[:0], outcomeAttributes[oi], WaitKey.Float64(data.Wait.Seconds()))
			switch data.Outcome {
			case advisorylock.OutcomeAcquired, advisorylock.OutcomeBusy:
				a.span.SetAttributes(attrs...)
			default:
				h.fail(a.span, m, data.Err, errorType(data.Outcome, data.Err), attrs)
			}
		}
		a.span.End()
	}
	if h.metrics != nil {
		h.metrics.acquired(ctx, a, oi, data.Wait)
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
	m := l.Mutex()
	mi, si := modeIndex(m.Mode()), scopeIndex(m.Scope())
	a := h.acquisition(data.AcquireContext)
	var ids lockIDs // without a, computed here
	var span trace.Span
	if h.tracer != nil {
		opts := h.holdOpts[mi][si]
		// With a span in the caller's context, the acquire and hold spans
		// are siblings under it; without, each starts a trace, and a link
		// relates them.
		if a != nil && a.span != nil && a.span.SpanContext().IsValid() && !trace.SpanContextFromContext(ctx).IsValid() {
			opts = append(opts[:len(opts):len(opts)], trace.WithLinks(trace.Link{SpanContext: a.span.SpanContext()}))
		}
		ctx, span = h.tracer.Start(ctx, HoldSpanName, opts...)
		if span.IsRecording() {
			if a != nil {
				h.lockIDs(&a.ids, m) // in place: a outlives the call
				span.SetAttributes(a.ids.attrs[:a.ids.n]...)
			} else {
				h.lockIDs(&ids, m)
				span.SetAttributes(ids.attrs[:ids.n]...)
			}
		} else if h.metrics == nil {
			return ctx // nothing to record
		}
	}
	c := &holdContext{Context: ctx, h: h, span: span, m: m}
	if h.metrics != nil {
		var name attribute.KeyValue
		if h.metricName {
			if a != nil {
				h.lockIDs(&a.ids, m)
				name = a.ids.name()
			} else {
				h.lockIDs(&ids, m)
				name = ids.name()
			}
		}
		c.metric = h.metrics.holdStarted(ctx, mi, si, name)
	}
	return c
}

// HoldEnd ends the hold's span with the time the lock was held, and records
// the hold's metrics. A lost lock, or a release that failed, sets the span's
// status to error. It implements advisorylock.HoldHook.
func (h *Hook) HoldEnd(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldEndData) {
	if h.off() {
		return
	}
	c := h.hold(ctx)
	if c == nil {
		return // nothing to record, or not started by h
	}
	if c.span != nil {
		if c.span.IsRecording() {
			attrs := append(c.scratch[:0], HeldKey.Float64(data.Held.Seconds()))
			if data.Lost {
				attrs = append(attrs, LostKey.Bool(true))
			}
			switch {
			case data.Err == nil:
				c.span.SetAttributes(attrs...)
			case data.Lost:
				h.fail(c.span, c.m, data.Err, errorTypeLockLost, attrs)
			default:
				h.fail(c.span, c.m, data.Err, errorType(advisorylock.OutcomeError, data.Err), attrs)
			}
		}
		c.span.End()
	}
	if h.metrics != nil {
		h.metrics.holdEnded(ctx, c.metric, data.Held)
	}
}

// LockLost adds the event LostEventName to the hold's span and counts the
// loss in advisorylock.lost. The span itself ends, with an error status, in
// the HoldEnd that follows. It implements advisorylock.LostHook.
func (h *Hook) LockLost(ctx context.Context, l *advisorylock.Lock, data advisorylock.LostData) {
	if h.off() {
		return
	}
	c := h.hold(ctx)
	if c == nil {
		return // nothing to record, or not started by h
	}
	if c.span != nil {
		c.span.AddEvent(LostEventName, trace.WithAttributes(
			HeldKey.Float64(data.Held.Seconds()),
			semconv.ErrorTypeKey.String(errorTypeLockLost)))
	}
	if h.metrics != nil {
		h.metrics.lockLost(ctx, c.metric)
	}
}

// Attributes computed once: the values of the enumerations.
var (
	modeAttributes    = [...]attribute.KeyValue{LockModeKey.String(advisorylock.ModeExclusive.String()), LockModeKey.String(advisorylock.ModeShared.String())}
	scopeAttributes   = [...]attribute.KeyValue{LockScopeKey.String(advisorylock.ScopeSession.String()), LockScopeKey.String(advisorylock.ScopeTransaction.String())}
	outcomes          = [...]advisorylock.Outcome{advisorylock.OutcomeAcquired, advisorylock.OutcomeBusy, advisorylock.OutcomeTimeout, advisorylock.OutcomeCanceled, advisorylock.OutcomeError}
	outcomeAttributes [len(outcomes)]attribute.KeyValue
)

func init() {
	for i, o := range outcomes {
		outcomeAttributes[i] = OutcomeKey.String(o.String())
	}
}

func modeIndex(m advisorylock.Mode) int {
	if m == advisorylock.ModeShared {
		return 1
	}
	return 0
}

func scopeIndex(s advisorylock.Scope) int {
	if s == advisorylock.ScopeTransaction {
		return 1
	}
	return 0
}

// outcomeIndex maps an Outcome to its index in outcomes; unknown outcomes
// count as errors.
func outcomeIndex(o advisorylock.Outcome) int {
	for i, known := range outcomes {
		if o == known {
			return i
		}
	}
	return len(outcomes) - 1
}

// keyString formats k as Key.String does, in one allocation.
func keyString(k advisorylock.Key) string {
	var buf [24]byte
	b := buf[:0]
	if k1, k2, ok := k.Pair(); ok {
		b = append(b, '(')
		b = strconv.AppendInt(b, int64(k1), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(k2), 10)
		b = append(b, ')')
	} else {
		v, _ := k.Int64()
		b = strconv.AppendInt(b, v, 10)
	}
	return string(b)
}

// nameHash returns HashLockName(m.Name()) for a Mutex made by
// advisorylock.New, without hashing: the key of a named lock is made of the
// same first 8 bytes of the name's SHA-256 (see advisorylock.KeyFromName),
// little-endian int32 halves.
func nameHash(m *advisorylock.Mutex) string {
	k1, k2, ok := m.Key().Pair()
	if !ok {
		return HashLockName(m.Name())
	}
	var sum [8]byte
	binary.LittleEndian.PutUint32(sum[0:4], uint32(k1))
	binary.LittleEndian.PutUint32(sum[4:8], uint32(k2))
	var buf [16]byte
	hex.Encode(buf[:], sum[:])
	return string(buf[:])
}

// nameAttribute renders m's name as the policy says, or returns an invalid
// KeyValue (no key) when nothing is to be recorded.
func (h *Hook) nameAttribute(m *advisorylock.Mutex) attribute.KeyValue {
	name := m.Name()
	if name == "" {
		return attribute.KeyValue{}
	}
	switch h.names {
	case LockNameFull:
		return LockNameKey.String(name)
	case LockNameHashed:
		return LockNameHashKey.String(nameHash(m))
	default:
		return attribute.KeyValue{}
	}
}

// error.type values of this instrumentation, besides SQLSTATEs.
const (
	errorTypeTimeout  = "timeout"
	errorTypeCanceled = "canceled"
	errorTypeLockLost = "lock_lost"
)

// errorType classifies a failure for error.type, with few values: the
// outcome's when it says more than "error", the SQLSTATE of a server error,
// "lock_lost", or "_OTHER".
func errorType(o advisorylock.Outcome, err error) string {
	var pgErr *pgconn.PgError
	switch {
	case o == advisorylock.OutcomeTimeout:
		return errorTypeTimeout
	case o == advisorylock.OutcomeCanceled:
		return errorTypeCanceled
	case errors.Is(err, advisorylock.ErrLockLost):
		return errorTypeLockLost
	case errors.As(err, &pgErr) && pgErr.Code != "":
		return pgErr.Code
	default:
		return semconv.ErrorTypeOther.Value.AsString()
	}
}

// fail sets attrs on span, marks it failed with err, and adds error.type typ
// and the SQLSTATE of a server error. The status description is err's text,
// with the lock's name replaced by its key unless the policy records names in
// full.
func (h *Hook) fail(span trace.Span, m *advisorylock.Mutex, err error, typ string, attrs []attribute.KeyValue) {
	attrs = append(attrs, semconv.ErrorTypeKey.String(typ))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code != "" {
		attrs = append(attrs, semconv.DBResponseStatusCode(pgErr.Code))
	}
	span.SetAttributes(attrs...)
	desc := typ
	if err != nil {
		desc = err.Error()
		if name := m.Name(); name != "" && h.names != LockNameFull {
			// The package's errors name the lock as Mutex.String does: its
			// quoted name.
			desc = strings.ReplaceAll(desc, strconv.Quote(name), "key "+m.Key().String())
		}
	}
	span.SetStatus(codes.Error, desc)
}
