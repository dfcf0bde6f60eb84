package advisorylock_test

import (
	"os"
	"slices"
)

// A fuzz worker is a copy of the test binary that the fuzzing coordinator
// starts (go test -fuzz), with -test.fuzzworker. It runs TestMain too, which
// would provision a PostgreSQL server of its own per worker (initdb: a second
// or more, counted in -fuzztime) for fuzz targets that need none. The
// coordinator has already started one and exported its DSN as DATABASE_URL
// (pgtest.MainWithEnv) before starting the workers: pointing their harness
// at it (ADVISORYLOCK_TEST_DSN) turns each worker's start into a ping. The
// coordinator's server outlives its workers.
func init() {
	worker := slices.ContainsFunc(os.Args[1:], func(a string) bool {
		return a == "-test.fuzzworker" || a == "-test.fuzzworker=true"
	})
	if dsn := os.Getenv("DATABASE_URL"); worker && dsn != "" && os.Getenv("ADVISORYLOCK_TEST_DSN") == "" {
		os.Setenv("ADVISORYLOCK_TEST_DSN", dsn)
	}
}
