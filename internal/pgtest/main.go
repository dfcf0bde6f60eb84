package pgtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// envRequireDB names the environment variable that, set to 1, makes a
// missing server fail the run.
const envRequireDB = "ADVISORYLOCK_TEST_REQUIRE_DB"

// startTimeout bounds Main's start of the package's server, including an
// image pull on the Docker path.
const startTimeout = 3 * time.Minute

// pkgServer is the server Main started for the test binary.
var pkgServer struct {
	mu     sync.Mutex
	inMain bool    // Main has run Start
	srv    *Server // nil when Start failed
	err    error   // why Start failed
}

// Main is for TestMain. It starts the package's server with Start, runs the
// tests, stops the server, checks that the tests leaked no goroutines
// (goleak) and exits with the tests' code, or 1 if stopping the server or the
// leak check failed.
//
// When no server can be started and Required reports true, it prints the
// error and exits 1 without running tests. Otherwise it runs them anyway, and
// those calling Require skip.
func Main(m *testing.M) {
	os.Exit(runMain(m, ""))
}

// MainWithEnv is Main that also exports the server's DSN in the environment
// variable name, for runnable examples, which read it as real code would read
// its configuration. When there is no server, the examples are skipped with
// the tests (or the run fails, as Main's does).
func MainWithEnv(m *testing.M, name string) {
	os.Exit(runMain(m, name))
}

func runMain(m *testing.M, env string) int {
	// The snapshot is taken before Start, so goroutines the harness starts
	// must end by the check, except the launcher, which lives on purpose.
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	srv, err := Start(ctx)
	cancel()
	pkgServer.mu.Lock()
	pkgServer.inMain, pkgServer.srv, pkgServer.err = true, srv, err
	pkgServer.mu.Unlock()
	if err != nil {
		if Required() {
			fmt.Fprintf(os.Stderr, "pgtest: a server is required (CI or %s=1): %v\n", envRequireDB, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "pgtest: tests needing PostgreSQL will skip: %v\n", err)
		if env != "" {
			// Examples cannot skip themselves: leave them out of the run.
			flag.Parse()
			if err := flag.Set("test.skip", "^Example"); err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
				return 1
			}
		}
	}
	if srv != nil && env != "" {
		os.Setenv(env, srv.DSN())
	}

	code := m.Run()

	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop server: %v\n", err)
			code = max(code, 1)
		}
	}
	if err := findLeaks(before); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: goroutines leaked: %v\n", err)
		code = max(code, 1)
	}
	return code
}

// leakPatience is how long goroutines get to end after the tests: the
// library's lock sessions close themselves once they have carried nothing
// for a second. goleak.Find alone looks for about half a second.
const leakPatience = 5 * time.Second

// findLeaks reports the goroutines still running leakPatience after the
// tests, but those running before them and the launcher.
func findLeaks(before goleak.Option) error {
	deadline := time.Now().Add(leakPatience)
	for {
		err := goleak.Find(before, goleak.IgnoreTopFunction(funcName(launchLoop)))
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// Required reports whether a missing server must fail the run: when CI is
// "true" or "1", or ADVISORYLOCK_TEST_REQUIRE_DB is "1".
func Required() bool {
	ci := os.Getenv("CI")
	return strings.EqualFold(ci, "true") || ci == "1" || os.Getenv(envRequireDB) == "1"
}

// Require returns the package's server, started by Main. When there is none
// it skips t with the reason, which names the ways to provide one, or fails t
// if Required reports true. It fails t when TestMain does not call Main.
func Require(t testing.TB) *Server {
	t.Helper()
	pkgServer.mu.Lock()
	inMain, srv, err := pkgServer.inMain, pkgServer.srv, pkgServer.err
	pkgServer.mu.Unlock()
	switch {
	case !inMain:
		t.Fatal("pgtest: Require needs TestMain to call pgtest.Main")
	case srv != nil:
		return srv
	case Required():
		t.Fatal(err)
	default:
		t.Skip(err)
	}
	return nil
}

// Unavailable ends t because something it needs is missing here (a
// pseudo-terminal, /proc, a server of a kind): t is skipped with the reason,
// or fails with it when Required reports true, since a CI run must skip
// nothing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("required, but unavailable: "+format, args...)
	}
	t.Skipf(format, args...)
}

// funcName returns the name goroutine stacks show for f.
func funcName(f any) string {
	return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
}
