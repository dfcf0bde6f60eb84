package advisorylock

// ProbesSent reports how many keepalive probes have been sent for the lock:
// by its lock session, or by the watcher of its pinned connection.
func (l *Lock) ProbesSent() int64 {
	if l.sess != nil {
		return l.sess.w.Probes()
	}
	return int64(l.watch.probes.Load())
}
