package periodic_test

import (
	"testing"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestMain provisions the test server, and checks once the tests have run that
// they leaked no goroutine; the runnable examples find the server in
// DATABASE_URL. Run as a replica process of TestReplicas, the binary runs
// that replica alone (see TestReplicaWorker).
func TestMain(m *testing.M) {
	if runReplicaWorker() {
		return // not reached: the worker exits
	}
	pgtest.MainWithEnv(m, "DATABASE_URL")
}
