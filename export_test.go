package advisorylock

// RacedGrants reports how many session-level locks were found held, and
// released, after acquisitions that reported failure.
func RacedGrants() int64 { return racedGrants.Load() }
