package advisorylockotel

import (
	"slices"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/lockid"
)

// lockTelemetry is what a Hook records a lock with, built once per lock so
// that no span and no measurement builds it again.
type lockTelemetry struct {
	id          lockID
	mode, scope int // indexes in modeAttributes and scopeAttributes

	// The span attributes the Mutex determines: db.system.name, the key, the
	// name as the policy says, the mode and the scope. They are the hold
	// span's, and the acquire span's before try and outcome. Nil without
	// tracing.
	attrs []attribute.KeyValue
	// The acquire span's attributes, by try and outcome: attrs, try and
	// outcome. Each is built when first needed.
	acquireAttrs [len(tries)][len(outcomes)]atomic.Pointer[[]attribute.KeyValue]

	// Metric attribute sets: the metrics' own, or, with WithMetricLockName,
	// the lock's. Without metrics, nil.
	sets lockSets
}

// newLockTelemetry builds the telemetry of m, whose lockID is id.
func (h *Hook) newLockTelemetry(m *advisorylock.Mutex, id lockID) *lockTelemetry {
	t := &lockTelemetry{id: id, mode: modeIndex(m.Mode()), scope: scopeIndex(m.Scope())}
	name := h.nameAttribute(m)
	if h.tracer != nil {
		t.attrs = []attribute.KeyValue{
			semconv.DBSystemNamePostgreSQL,
			LockKeyKey.String(m.Key().String()),
			modeAttributes[t.mode],
			scopeAttributes[t.scope],
		}
		if name.Valid() {
			t.attrs = append(t.attrs, name)
		}
		t.attrs = slices.Clip(t.attrs)
	}
	if h.metrics != nil {
		if !h.metricName {
			name = attribute.KeyValue{}
		}
		t.sets = h.metrics.lockSets(t.mode, t.scope, name)
	}
	return t
}

// acquireAttributes returns the attributes of an acquire span of t, TryLock's
// if ti is 1, of outcome outcomes[oi].
func (t *lockTelemetry) acquireAttributes(ti, oi int) []attribute.KeyValue {
	if t.attrs == nil {
		return nil // no tracing
	}
	p := &t.acquireAttrs[ti][oi]
	if attrs := p.Load(); attrs != nil {
		return *attrs
	}
	attrs := append(t.attrs, TryKey.Bool(tries[ti]), outcomeAttributes[oi])
	p.Store(&attrs) // or another goroutine's, alike
	return attrs
}

// nameAttribute renders m's name as the policy says, or returns an invalid
// KeyValue (no key) when nothing is to be recorded.
func (h *Hook) nameAttribute(m *advisorylock.Mutex) attribute.KeyValue {
	switch name, hashed := lockid.Name(m, h.names); {
	case name == "":
		return attribute.KeyValue{}
	case hashed:
		return LockNameHashKey.String(name)
	default:
		return LockNameKey.String(name)
	}
}

// lockID is what a lock's telemetry depends on: the Mutexes of equal lockIDs
// are recorded alike, whichever the Mutex (say, one made per request).
type lockID struct {
	key   advisorylock.Key
	mode  advisorylock.Mode
	scope advisorylock.Scope
	named bool
	name  string // with LockNameFull only: otherwise the key says it all
}

func (h *Hook) lockID(m *advisorylock.Mutex) lockID {
	id := lockID{key: m.Key(), mode: m.Mode(), scope: m.Scope(), named: m.Name() != ""}
	if h.names == LockNameFull {
		id.name = m.Name()
	}
	return id
}

// lockCacheBits sizes a Hook's lockCache: 256 slots.
const lockCacheBits = 8

// lockCache keeps the telemetry of the locks a Hook has seen, in a table of
// slots indexed by a hash of their lockIDs: a lock used again finds its
// telemetry built, unless another lock took its slot since, and then builds
// it anew. However many locks a program names (say, one per customer), the
// cache holds at most one telemetry per slot.
type lockCache [1 << lockCacheBits]atomic.Pointer[lockTelemetry]

// telemetry returns the telemetry of m, built now or before.
func (h *Hook) telemetry(m *advisorylock.Mutex) *lockTelemetry {
	id := h.lockID(m)
	slot := &h.locks[id.slot()]
	if t := slot.Load(); t != nil && t.id == id {
		return t
	}
	t := h.newLockTelemetry(m, id)
	slot.Store(t)
	return t
}

// slot returns id's slot in a lockCache: a multiplicative hash of its key,
// mode and scope.
func (id *lockID) slot() int {
	k1, k2, _ := id.key.Pair()
	v, _ := id.key.Int64()
	x := (uint64(uint32(k1))<<32 | uint64(uint32(k2))) ^ uint64(v)
	x ^= uint64(id.mode)<<62 ^ uint64(id.scope)<<61
	return int((x * 0x9E3779B97F4A7C15) >> (64 - lockCacheBits))
}

// Attributes computed once: the values of the enumerations.
var (
	modeAttributes    = [...]attribute.KeyValue{LockModeKey.String(advisorylock.ModeExclusive.String()), LockModeKey.String(advisorylock.ModeShared.String())}
	scopeAttributes   = [...]attribute.KeyValue{LockScopeKey.String(advisorylock.ScopeSession.String()), LockScopeKey.String(advisorylock.ScopeTransaction.String())}
	tries             = [...]bool{false, true}
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

func boolIndex(b bool) int {
	if b {
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
