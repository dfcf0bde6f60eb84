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
