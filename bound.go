package advisorylock

import (
	"strconv"
	"strings"
	"time"
)

// The server's side of a silent network.
//
// A client that vanishes without a word (a cut network, a host that lost
// power) keeps its session, and the session's locks, until the server's TCP
// stack gives up on it: with Linux's defaults (tcp_keepalives_idle 7200 s,
// _interval 75 s, _count 9) after 2 h 11 min. The holder learns of the same
// silence within two keepalive intervals (WithKeepalive): for two hours
// nobody else can take the lock, and when the server finally drops it the
// holder may not have noticed yet (its process frozen meanwhile, say).
//
// So a lock session sets the server's per-session TCP bounds
// (tcp_keepalives_idle, tcp_keepalives_interval, tcp_keepalives_count,
// tcp_user_timeout; user-settable since PostgreSQL 12) in the statement it
// sends when it opens, at no extra round trip. The server then ends the
// session of a client it has not heard from for serverBound(K), measured from
// the last packet it received (or, with an answer of its own left
// unacknowledged, from when it sent it):
//
//	serverBound(K) = 2K + max(K, 1s)        (3K for K ≥ 1s; 9s by default)
//
// and at most one server keepalive interval later. The client gives up 2K at
// most after the last byte it received, and the server's clock starts no
// earlier than that, less half a round trip: so the holder is told
// before the server frees the lock, with a margin of K (at least 1s) for a
// loaded client to act.

// minMargin is the least margin between the client's bound and the server's.
const minMargin = time.Second

// serverBound returns how long the server waits, from the last packet it
// received from a lock session's client, before it ends the session, for a
// keepalive K; 0 when K is 0 (no probe: the client has no bound either, and
// the server keeps its own settings).
func serverBound(k time.Duration) time.Duration {
	if k <= 0 {
		return 0
	}
	return 2*k + max(k, minMargin)
}

// serverKeepalive is what the server is asked to do for a keepalive K: probe
// a silent client after idle, then every interval, count times, and give up
// on unacknowledged data or unanswered probes after userTimeout. PostgreSQL
// takes the keepalive settings in whole seconds.
type serverKeepalive struct {
	idle, interval time.Duration // whole seconds, at least 1s
	count          int
	userTimeout    time.Duration // whole milliseconds
}

// serverKeepaliveFor returns the server's settings for keepalive k > 0. With
// tcp_user_timeout (Linux), the server ends the session at its first
// keepalive probe due at or after userTimeout; without it, after count
// unanswered probes: at idle + count×interval. Both are at least
// serverBound(k), and at most one interval more.
func serverKeepaliveFor(k time.Duration) serverKeepalive {
	b := serverBound(k)
	iv := max((k / 2).Truncate(time.Second), time.Second)
	n := int((b+iv-1)/iv) - 1 // ceil(b/interval) - 1: idle + n×interval ≥ b
	return serverKeepalive{idle: iv, interval: iv, count: max(n, 1), userTimeout: (b + time.Millisecond - 1).Truncate(time.Millisecond)}
}

// boundSQL returns the set_config calls that put the server's bounds for
// keepalive k on a session, for a select list (", pg_catalog.set_config(…)"
// each), or "" when k is 0. serverVersion is the server_version parameter:
// tcp_user_timeout is left out before PostgreSQL 12, which lacks it.
func boundSQL(k time.Duration, serverVersion string) string {
	if k <= 0 {
		return ""
	}
	s := serverKeepaliveFor(k)
	var b strings.Builder
	set := func(name, value string) {
		b.WriteString(", pg_catalog.set_config('")
		b.WriteString(name)
		b.WriteString("', '")
		b.WriteString(value)
		b.WriteString("', false)")
	}
	set("tcp_keepalives_idle", strconv.Itoa(int(s.idle/time.Second)))
	set("tcp_keepalives_interval", strconv.Itoa(int(s.interval/time.Second)))
	set("tcp_keepalives_count", strconv.Itoa(s.count))
	// tcp_user_timeout is an int4 of milliseconds: beyond it (a keepalive
	// of days), the keepalive settings alone give the bound.
	if serverMajor(serverVersion) >= 12 && s.userTimeout <= maxLockTimeout {
		set("tcp_user_timeout", strconv.FormatInt(s.userTimeout.Milliseconds(), 10))
	}
	return b.String()
}

// serverMajor returns the major version in a server_version parameter such
// as "15.10 (Debian 15.10-0+deb12u1)" or "17beta1", or 0 when there is none.
func serverMajor(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}
