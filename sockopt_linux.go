package advisorylock

import (
	"net"
	"syscall"
	"time"
)

// tcpUserTimeoutOpt is Linux's TCP_USER_TIMEOUT (linux/tcp.h), which the
// syscall package does not name.
const tcpUserTimeoutOpt = 0x12

// setUserTimeout sets the socket's TCP_USER_TIMEOUT: how long data it sent
// may stay unacknowledged, and a keepalive unanswered, before the kernel gives
// up on the connection. Best effort: an error leaves the system's setting.
func setUserTimeout(c net.Conn, d time.Duration) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeoutOpt, int(d.Milliseconds()))
	})
}
