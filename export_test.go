package advisorylock

import "time"

// RacedGrants reports how many session-level locks were found held, and
// released, after acquisitions that reported failure.
func RacedGrants() int64 { return racedGrants.Load() }

// SetReleaseTimeout sets the bound on WithLock's release until the test ends.
func SetReleaseTimeout(t interface{ Cleanup(func()) }, d time.Duration) {
	old := releaseTimeout
	releaseTimeout = d
	t.Cleanup(func() { releaseTimeout = old })
}
