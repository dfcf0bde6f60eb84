package fence_test

import (
	"os"
	"slices"
)

// A fuzz worker (go test -fuzz starts copies of the test binary with
// -test.fuzzworker) runs TestMain too, which would provision a server of its
// own per worker. The coordinator's server is in DATABASE_URL
// (pgtest.MainWithEnv): pointing the worker's harness at it makes its start a
// ping. The coordinator's server outlives its workers.
func init() {
	worker := slices.ContainsFunc(os.Args[1:], func(a string) bool {
		return a == "-test.fuzzworker" || a == "-test.fuzzworker=true"
	})
	if dsn := os.Getenv("DATABASE_URL"); worker && dsn != "" && os.Getenv("ADVISORYLOCK_TEST_DSN") == "" {
		os.Setenv("ADVISORYLOCK_TEST_DSN", dsn)
	}
}
