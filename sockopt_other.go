//go:build !linux

package advisorylock

import (
	"net"
	"time"
)

// setUserTimeout does nothing here: TCP_USER_TIMEOUT is Linux's. A wait's
// silent network is then noticed by the TCP keepalive alone, once the data
// sent before it was acknowledged.
func setUserTimeout(net.Conn, time.Duration) {}
