//go:build unix

package pgwire

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// watchFD is a duplicate of a plain TCP or Unix socket's descriptor, with
// a poll registration of its own, on which the watcher waits for bytes to
// arrive without consuming them (see Session.watch): a caller reading its
// answer on the socket itself never contends with it.
type watchFD struct {
	f  *os.File
	rc syscall.RawConn
}

// newWatchFD returns a watchFD for conn, or nil if conn is not a plain
// socket whose arrivals the kernel can report (a TLS connection buffers
// what it has decrypted, out of the kernel's sight).
func newWatchFD(conn net.Conn) *watchFD {
	fc, ok := conn.(interface{ File() (*os.File, error) })
	if !ok {
		return nil
	}
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	f, err := fc.File()
	if err != nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	return &watchFD{f: f, rc: rc}
}

// readable reports whether a byte, an end of stream or an error waits on
// the socket, without consuming it and without blocking.
func (w *watchFD) readable() bool {
	var ready bool
	err := w.rc.Control(func(fd uintptr) { ready = peek(int(fd)) })
	return ready || err != nil
}

// wait blocks until accept returns true, until the deadline set by
// setDeadline, or until close. accept is called at once and then whenever
// bytes arrive on the socket, on the calling goroutine, with a function that
// reports whether the socket is readable now.
func (w *watchFD) wait(accept func(readable func() bool) bool) error {
	return w.rc.Read(func(fd uintptr) bool {
		return accept(func() bool { return peek(int(fd)) })
	})
}

// setDeadline bounds wait: it returns os.ErrDeadlineExceeded once t has
// passed; a past t ends a wait under way at once. The zero time removes the
// bound.
func (w *watchFD) setDeadline(t time.Time) error { return w.f.SetReadDeadline(t) }

// close ends a wait under way, which returns an error, and releases the
// descriptor; the socket itself stays open.
func (w *watchFD) close() { _ = w.f.Close() }

// peek reports whether fd has something to read: a byte, an end of stream
// or an error.
func peek(fd int) bool {
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EWOULDBLOCK):
			return false
		}
		_ = n // n > 0: bytes; n == 0: the stream's end; err: an error to read
		return true
	}
}
