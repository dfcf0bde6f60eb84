package advisorylockslog_test

import (
	"testing"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestMain provisions the test server; the runnable examples find it in
// DATABASE_URL.
func TestMain(m *testing.M) { pgtest.MainWithEnv(m, "DATABASE_URL") }
