package periodic

import "time"

// WithClockSkew makes a Job read the client's clock skewed by d, as a replica
// whose clock is d ahead (or behind, for a negative d) would: the wall clock
// moves, the monotonic one does not.
func WithClockSkew(d time.Duration) Option {
	return withClock(func() time.Time { return time.Now().Add(d) })
}
