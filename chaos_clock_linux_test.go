//go:build linux

package advisorylock_test

import (
	"syscall"
	"unsafe"
)

// clockMonotonic is CLOCK_MONOTONIC from <time.h>.
const clockMonotonic = 1

// chaosNow returns the machine's CLOCK_MONOTONIC in nanoseconds. Unlike the
// monotonic reading inside a time.Time, which counts from the start of its own
// process, it is one clock for every process on the machine, so the
// timestamps TestChaos's worker processes and the fault injector record can
// be compared with each other. It is read by a plain system call rather than
// the vDSO: a few hundred nanoseconds, negligible next to a round trip.
func chaosNow() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return ts.Nano()
}
