package pgwire

// Pipelined returns how many queries were queued while earlier ones were
// still unanswered: sent without waiting for those answers.
func Pipelined(s *Session) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.pipelined
}

// Writes returns how many writes to the socket the session made.
func Writes(s *Session) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.writes
}

// OwnReads returns how many answers were read by their own caller.
func OwnReads(s *Session) int64 { return s.own.Load() }

// ReadsOwn reports whether callers read their own answers on s (a plain
// socket), rather than being handed them by the watcher (TLS).
func ReadsOwn(s *Session) bool { return s.wfd != nil }
