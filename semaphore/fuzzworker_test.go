package semaphore_test

import (
	"os"
	"slices"
)

// A fuzz worker (go test -fuzz starts copies of the test binary with
// -test.fuzzworker) runs TestMain too, which would start a PostgreSQL server
// of its own for FuzzKeys, which needs none. The coordinator exported its
// server's DSN as DATABASE_URL before starting the workers: pointing their
// harness at it (ADVISORYLOCK_TEST_DSN) turns each worker's start into a
// ping.
func init() {
	worker := slices.ContainsFunc(os.Args[1:], func(a string) bool {
		return a == "-test.fuzzworker" || a == "-test.fuzzworker=true"
	})
	if dsn := os.Getenv("DATABASE_URL"); worker && dsn != "" && os.Getenv("ADVISORYLOCK_TEST_DSN") == "" {
		os.Setenv("ADVISORYLOCK_TEST_DSN", dsn)
	}
}
