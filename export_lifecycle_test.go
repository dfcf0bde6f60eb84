package advisorylock

// ProbesSent reports how many keepalive probes the lock's watcher has sent.
func (l *Lock) ProbesSent() int32 { return l.watch.probes.Load() }
