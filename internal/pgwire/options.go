package pgwire

import "time"

// defaultProbe is the keepalive probe's query when Options.Probe is nil: a
// comment alone, which the server answers with EmptyQueryResponse.
const defaultProbe = "-- pgwire keepalive"

// Options configure a Session. The zero value is a session without
// keepalive.
type Options struct {
	// Keepalive, when positive, is how long the session waits for the server
	// to say something while it expects an answer. After one to two
	// intervals in which nothing arrived and nothing was pending, it sends a
	// probe query, to expect an answer again. When the server then sends
	// nothing for an interval (one to two for a query sent meanwhile; plus a
	// quarter of one, spent making sure), whether a probe or a caller's query
	// is pending, the session ends with ErrSilent; so does a write that makes
	// no progress for three quarters of an interval to one. Anything the server sends counts as a
	// sign of life.
	//
	// A statement that may keep the server silent for longer, such as a lock
	// wait without a shorter lock_timeout, needs a session with a longer
	// Keepalive or none. Zero turns keepalive off.
	Keepalive time.Duration

	// Probe returns the text of each keepalive probe. It is called on the
	// session's watcher goroutine when a probe is due, so the caller can put
	// state in a comment there, where pg_stat_activity shows it; it must not
	// block. Nil means "-- pgwire keepalive". A comment-only query costs the
	// server no parsing beyond the comment.
	Probe func() string

	// OnDead, when not nil, is called once when the session ends, whatever
	// ended it (Close included), with the error Err returns, after every
	// pending query has been completed with that error. It runs on the
	// session's watcher goroutine: it must not block and must not call Close.
	OnDead func(error)
}
