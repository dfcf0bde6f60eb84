package advisorylock

import (
	"context"
	"errors"
	"time"
)

// ServerBound is serverBound: how long the server waits, from the last packet
// of a silent lock session's client, before it ends the session.
func ServerBound(k time.Duration) time.Duration { return serverBound(k) }

// ServerKeepalive returns the TCP settings a lock session asks the server for
// with keepalive k.
func ServerKeepalive(k time.Duration) (idle, interval time.Duration, count int, userTimeout time.Duration) {
	s := serverKeepaliveFor(k)
	return s.idle, s.interval, s.count, s.userTimeout
}

// SessionSettings returns the values of the named settings on the lock
// session carrying l, as pg_settings shows them, in their base units.
func (l *Lock) SessionSettings(ctx context.Context, names ...string) (map[string]string, error) {
	if l.sess == nil {
		return nil, errors.New("not on a lock session")
	}
	got := make(map[string]string, len(names))
	for _, name := range names {
		res, err := l.sess.w.Do(ctx, "select setting from pg_catalog.pg_settings where name = '"+name+"'")
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			return nil, err
		}
		if len(res.Rows) == 1 {
			got[name] = string(res.Rows[0][0])
		}
	}
	return got, nil
}
