package advisorylock

import (
	"context"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The client's side of a silent network, for a session that waits.
//
// A lock session's keepalive probe notices a silent server within two
// keepalive intervals, except while the session waits for a lock: the server
// may rightly say nothing for as long as the lock is held, and a probe sent
// then would be answered only after the grant. The operating system's TCP
// stack notices a dead peer whatever the session is doing, since the peer's
// kernel answers it: a lock session's socket sends TCP keepalives after an
// idle interval of half the keepalive (in whole seconds, at least one), and
// gives up when three go unanswered or, on Linux, when data it sent stays
// unacknowledged as long (TCP_USER_TIMEOUT; without it, a network cut just
// after the wait's statement left would be retransmitted to for a quarter of
// an hour, keepalives suspended meanwhile). A wait whose network went silent
// then fails like one whose backend was terminated, and starts again (see
// retry.go).

// tcpKeepaliveProbes is how many unanswered TCP keepalive probes end a lock
// session's connection.
const tcpKeepaliveProbes = 3

// sessionConfig returns a copy of cfg for lock sessions probed at keepalive
// k: its DialFunc sets the socket's TCP keepalive from k. A connection that is
// not a plain TCP one (a Unix socket, or a DialFunc's own kind) is left as it
// is.
func sessionConfig(cfg *pgconn.Config, k time.Duration) *pgconn.Config {
	cfg = cfg.Copy()
	if k <= 0 {
		return cfg
	}
	dial := cfg.DialFunc
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	iv := max((k / 2).Truncate(time.Second), time.Second)
	ka := net.KeepAliveConfig{Enable: true, Idle: iv, Interval: iv, Count: tcpKeepaliveProbes}
	giveUp := iv * (1 + tcpKeepaliveProbes)
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(interface {
			SetKeepAliveConfig(net.KeepAliveConfig) error
		}); ok {
			// Best effort: a socket that refuses keeps the system's
			// settings, and the session works all the same.
			_ = tc.SetKeepAliveConfig(ka)
			setUserTimeout(c, giveUp)
		}
		return c, nil
	}
	return cfg
}
