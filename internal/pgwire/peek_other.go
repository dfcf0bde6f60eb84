//go:build !unix

package pgwire

import (
	"net"
	"time"
)

// watchFD is not available on this system: every session reads on its
// reader goroutine (see Session.watch).
type watchFD struct{}

func newWatchFD(net.Conn) *watchFD                          { return nil }
func (*watchFD) readable() bool                             { return true }
func (*watchFD) wait(func(readable func() bool) bool) error { return nil }
func (*watchFD) setDeadline(time.Time) error                { return nil }
func (*watchFD) close()                                     {}
