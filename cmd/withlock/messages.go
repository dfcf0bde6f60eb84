package main

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock"
)

// Each of withlock's messages is one line, "withlock: " and then each fact
// once. The errors it reports say some facts twice: pgconn reports every
// connection attempt, and with sslmode=prefer (the default) it makes two,
// with TLS and without, that fail alike; each attempt names its address twice
// ("127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1: ..."); and the
// library's errors repeat the operation and the lock the message names
// already, after a package prefix of their own. The functions here say each of
// those facts once, and fall back to the error's own text where it is not
// shaped as expected.

// describe is err's text for a message that has said what failed, and on
// which lock: "cannot lock "x": <describe(err)>".
func describe(err error) string {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return "cannot connect to " + connectTarget(ce.Config) + ": " + connectFailure(ce)
	}
	return libraryCause(err)
}

// connectTarget names the database and the user of a connection attempt:
// what pgconn's "failed to connect to `user=u database=d`" says.
func connectTarget(cfg *pgconn.Config) string {
	s := "the database"
	if cfg != nil && cfg.Database != "" {
		s = fmt.Sprintf("database %q", cfg.Database)
	}
	if cfg != nil && cfg.User != "" {
		s += fmt.Sprintf(" as user %q", cfg.User)
	}
	return s
}

// connectFailure says why a connection could not be made: each distinct
// failed attempt once, on one line, without pgconn's "failed to connect to"
// prefix (see connectTarget).
func connectFailure(ce *pgconn.ConnectError) string {
	inner := ce.Unwrap()
	if inner == nil {
		return ce.Error()
	}
	// "hostname resolving error: " before the joined failures of every host.
	lead := ""
	if w := errors.Unwrap(inner); w != nil && isJoin(w) && strings.HasSuffix(inner.Error(), w.Error()) {
		lead, inner = strings.TrimSuffix(inner.Error(), w.Error()), w
	}
	attempts := []error{inner}
	if isJoin(inner) {
		attempts = inner.(interface{ Unwrap() []error }).Unwrap()
	}
	var parts []string
	for _, a := range attempts {
		for _, p := range strings.Split(tidyAttempt(a), "\n") {
			if p = strings.TrimSpace(p); p != "" && !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
	}
	return lead + strings.Join(parts, "; ")
}

// isJoin reports whether err wraps several errors, as errors.Join does.
func isJoin(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

// attemptPrefix matches pgconn's prefix of a failed attempt: the address
// dialled and, in parentheses, the host it came from.
var attemptPrefix = regexp.MustCompile(`^(\S+) \(([^()]*)\): `)

// tidyAttempt is the text of one failed connection attempt, with the address
// said once: "127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1:
// connect: connection refused" becomes "127.0.0.1:1: dial error: connect:
// connection refused"; a host name that is not the address stays
// ("127.0.0.1:1 (localhost): ...").
func tidyAttempt(err error) string {
	text := err.Error()
	m := attemptPrefix.FindStringSubmatch(text)
	if m == nil {
		return text
	}
	addr, host, rest := m[1], m[2], text[len(m[0]):]
	where := addr
	if host != addr && !strings.HasPrefix(addr, host+"/") { // a socket's directory
		if h, _, err := net.SplitHostPort(addr); err != nil || h != host {
			where += " (" + host + ")"
		}
	}
	// The dial error names the address again: keep what it says of it.
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil && op.Addr != nil && op.Addr.String() == addr && strings.HasSuffix(rest, op.Error()) {
		rest = strings.TrimSuffix(rest, op.Error()) + op.Err.Error()
	}
	return where + ": " + rest
}

// libraryPrefix starts the text of the library's errors.
const libraryPrefix = "advisorylock: "

// libraryCause is the text of an error of the library without what the
// message says already: the operation and the lock (an *advisorylock.Error's
// Op and Lock) and the package prefix. An error of another shape keeps its
// text, less a leading package prefix.
func libraryCause(err error) string {
	var e *advisorylock.Error
	if errors.As(err, &e) && e.Err != nil {
		err = e.Err
	}
	return strings.TrimPrefix(err.Error(), libraryPrefix)
}
