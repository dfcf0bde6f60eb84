//go:build !linux

package semaphore_test

import "time"

// chaosNow returns the wall clock in nanoseconds since the Unix epoch, the
// one clock every process shares without a system-specific call; the
// project's CI runs on Linux, where chaosNow reads CLOCK_MONOTONIC.
func chaosNow() int64 { return time.Now().UnixNano() }
