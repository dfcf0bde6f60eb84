package semaphore_test

import (
	"testing"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestMain provisions the test server, and checks once the tests have run that
// they leaked no goroutine; the runnable examples find the server in
// DATABASE_URL.
func TestMain(m *testing.M) { pgtest.MainWithEnv(m, "DATABASE_URL") }
