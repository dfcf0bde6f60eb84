package pgwire

import "errors"

var (
	// ErrClosed is matched by every error a Session returns once it has ended:
	// by Close, by the server (a FATAL error, a closed connection), by a
	// failed read or write, or by silence (ErrSilent). Except after Close, the
	// error also wraps the cause.
	ErrClosed = errors.New("pgwire: session closed")

	// ErrSilent is the cause of a Session's end when the server went silent:
	// no byte arrived within a keepalive interval of a keepalive probe, or a
	// write to the server made no progress for most of a keepalive interval. See
	// Options.Keepalive.
	ErrSilent = errors.New("pgwire: the server went silent")

	// ErrInvalidQuery is returned for a query that cannot be sent in a Query
	// message: one containing a NUL byte, or larger than the protocol allows.
	// Nothing is sent and the session is unaffected.
	ErrInvalidQuery = errors.New("pgwire: invalid query")
)
