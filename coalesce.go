package advisorylock

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A gate queues the goroutines of this process that want one key in one mode
// on one pool, so that at most one of them occupies a pooled connection waiting
// in the server. Without it, 200 goroutines waiting for one lock would pin 200
// connections (or the whole pool) in lock waits and starve every other query.
//
// The gate holds one token. An exclusive acquirer takes it before it waits in
// the server and keeps it while it holds the lock: a second exclusive holder in
// this process would have to wait for the first anyway, and now it waits here,
// without a connection. A shared acquirer keeps the token only while it waits,
// since shared holders do not exclude each other. Blocked goroutines take the
// token in the order they asked for it (a channel's waiting senders are served
// first come, first served); across processes the server's lock queue decides,
// where this process's queue counts as one waiter.
type gate struct {
	token chan struct{}
	refs  int // goroutines using the gate; guarded by gates.mu
}

type gateKey struct {
	pool *pgxpool.Pool
	key  Key
	mode Mode
}

var gates = struct {
	mu sync.Mutex
	m  map[gateKey]*gate
}{m: make(map[gateKey]*gate)}

// unusedGates recycles gates: an uncontended lock opens and forgets one per
// acquisition. A forgotten gate's token channel is empty (every goroutine that
// put a token in took it out again when it left).
var unusedGates = sync.Pool{New: func() any { return &gate{token: make(chan struct{}, 1)} }}

// openGate returns m's gate, counting a reference to it.
func (m *Mutex) openGate() *gate {
	k := gateKey{m.pool, m.key, m.cfg.mode}
	gates.mu.Lock()
	g := gates.m[k]
	if g == nil {
		g = unusedGates.Get().(*gate)
		gates.m[k] = g
	}
	g.refs++
	gates.mu.Unlock()
	return g
}

// closeGate drops a reference to m's gate, forgetting it when unused.
func (m *Mutex) closeGate(g *gate) {
	gates.mu.Lock()
	if g.refs--; g.refs == 0 {
		delete(gates.m, gateKey{m.pool, m.key, m.cfg.mode})
		unusedGates.Put(g)
	}
	gates.mu.Unlock()
}

// enter takes m's token, waiting in this process until it is free, ctx is
// done or deadline (if not zero) passes. try makes it give up at once. It
// returns the gate to leave, or nil and why it could not enter.
func (m *Mutex) enter(ctx context.Context, deadline time.Time, try bool) (*gate, error) {
	g := m.openGate()
	select {
	case g.token <- struct{}{}:
		return g, nil
	default:
	}
	if try {
		m.closeGate(g)
		return nil, ErrLocked
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case g.token <- struct{}{}:
		return g, nil
	case <-ctx.Done():
		m.closeGate(g)
		return nil, ctx.Err()
	case <-expired:
		m.closeGate(g)
		return nil, context.DeadlineExceeded
	}
}

// leave gives the token back.
func (m *Mutex) leave(g *gate) {
	<-g.token
	m.closeGate(g)
}
