package advisorylock

import (
	"weak"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ProbesSent reports how many keepalive probes have been sent for the lock:
// by its lock session, or by the watcher of its pinned connection.
func (l *Lock) ProbesSent() int64 {
	if l.sess != nil {
		return l.sess.w.Probes()
	}
	return int64(l.watch.probes.Load())
}

// SessionsOpened reports how many lock sessions the Mutex's set has opened;
// 0 for a Mutex without lock sessions.
func (m *Mutex) SessionsOpened() int {
	if m.sessions == nil {
		return 0
	}
	m.sessions.mu.Lock()
	defer m.sessions.mu.Unlock()
	return m.sessions.opens
}

// SessionSetsOf reports how many sets of lock sessions the package keeps for
// the pool p points to.
func SessionSetsOf(p weak.Pointer[pgxpool.Pool]) int {
	sessionSets.mu.Lock()
	defer sessionSets.mu.Unlock()
	n := 0
	for k := range sessionSets.m {
		if k.pool == p {
			n++
		}
	}
	return n
}
