//go:build linux

package semaphore_test

import (
	"syscall"
	"unsafe"
)

// chaosNow returns the machine's CLOCK_MONOTONIC in nanoseconds: one clock
// for every process on the machine (a time.Time's monotonic reading counts
// from its own process's start), so that the sections TestChaos's worker
// processes record and the faults its injector records compare.
func chaosNow() int64 {
	var ts syscall.Timespec
	const clockMonotonic = 1 // CLOCK_MONOTONIC, <time.h>
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return ts.Nano()
}
