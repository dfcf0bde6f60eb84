//go:build !linux

package advisorylock_test

import "time"

// chaosNow returns the wall clock in nanoseconds since the Unix epoch: on
// systems other than Linux the test falls back to the one clock every process
// shares without a system-specific call. A step of the wall clock during a
// run (NTP corrects by slewing, rarely by stepping) would distort the
// comparison; the project's CI runs on Linux, where chaosNow reads
// CLOCK_MONOTONIC instead.
func chaosNow() int64 { return time.Now().UnixNano() }
