package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
)

var (
	// ErrNotOwned is returned for operations that need a server the harness
	// started itself, such as Restart on a server given by
	// ADVISORYLOCK_TEST_DSN.
	ErrNotOwned = errors.New("pgtest: server not started by the harness")

	// ErrUnavailable is wrapped by Start's error when no server could be had.
	ErrUnavailable = errors.New("pgtest: no PostgreSQL server available")
)

// envDSN names the environment variable holding the DSN of an existing
// server to test against.
const envDSN = "ADVISORYLOCK_TEST_DSN"

// Kinds of server, as reported by Server.Kind.
const (
	kindEnv    = "env"
	kindLocal  = "local"
	kindDocker = "docker"
)

// Server is a running PostgreSQL server for tests. Its methods are safe for
// concurrent use.
type Server struct {
	kind     string
	host     string
	port     int
	password string
	dsn      string
	own      owned // nil for the env kind
}

// owned is what the harness can do to a server it started.
type owned interface {
	stop() error
	restart(ctx context.Context) error
}

// DSN returns the URL to connect as a superuser to the server's maintenance
// database, postgres://USER:PASSWORD@127.0.0.1:PORT/DB?sslmode=disable for
// servers the harness started. For the env kind it is ADVISORYLOCK_TEST_DSN
// as given.
func (s *Server) DSN() string { return s.dsn }

// Password returns the password used to connect: the random one set by the
// harness, or for the env kind the one pgx resolves for the DSN (from the DSN
// itself or PGPASSWORD), "" when there is none.
func (s *Server) Password() string { return s.password }

// Host returns the host the server listens on (127.0.0.1 for servers the
// harness started).
func (s *Server) Host() string { return s.host }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// Kind reports how the server was provisioned: "env", "local" or "docker".
func (s *Server) Kind() string { return s.kind }

// Stop shuts the server down and removes what the harness made for it,
// waiting for the server's processes to exit. It is idempotent; later calls
// return nil. For the env kind it does nothing.
func (s *Server) Stop() error {
	if s.own == nil {
		return nil
	}
	return s.own.stop()
}

// Restart stops the server with a fast shutdown, which ends every session,
// and starts it again on the same port and data, returning once it accepts
// connections again or ctx ends. It returns ErrNotOwned for the env kind and
// an error after Stop.
func (s *Server) Restart(ctx context.Context) error {
	if s.own == nil {
		return fmt.Errorf("restart %s server: %w", s.kind, ErrNotOwned)
	}
	return s.own.restart(ctx)
}

// StartStandby takes a base backup of the server (pg_basebackup -R) into a
// new temporary directory and starts it as a hot standby streaming from this
// server, on another free port and with the same password. It blocks until
// the standby accepts connections or ctx ends. The standby is stopped by its
// own Stop, or at the latest by this server's Stop. Only the local kind can do
// this; other kinds get ErrNotOwned.
func (s *Server) StartStandby(ctx context.Context) (*Server, error) {
	ls, ok := s.own.(*localServer)
	if !ok {
		return nil, fmt.Errorf("standby of a %s server: %w", s.kind, ErrNotOwned)
	}
	return ls.startStandby(ctx)
}

// Promote makes a standby made by StartStandby the primary (pg_promote),
// blocking until it accepts writes or ctx ends: a failover. From then on it
// follows nobody, and only its own Stop stops it (the old primary's no longer
// does). The old primary runs on until stopped: a real failover fences it.
// Only a standby of the local kind can be promoted; other kinds get
// ErrNotOwned.
func (s *Server) Promote(ctx context.Context) error {
	ls, ok := s.own.(*localServer)
	if !ok {
		return fmt.Errorf("promote a %s server: %w", s.kind, ErrNotOwned)
	}
	return ls.promote(ctx)
}

// Start provisions a server, trying in this order:
//
//  1. ADVISORYLOCK_TEST_DSN, when set and non-empty (kind "env"). The server
//     must answer; if it does not, Start fails rather than silently testing
//     against another server.
//  2. A throwaway server run from the installed binaries (kind "local"),
//     started in about a second; see the package documentation for where the
//     binaries are looked for.
//  3. A postgres:15 container, when a Docker engine answers a ping (kind
//     "docker").
//
// It blocks until the server accepts connections or ctx ends. When no way
// works, the error wraps ErrUnavailable and the reason each way failed, and
// its text names the three ways to provide a server. The caller must Stop the
// server.
func Start(ctx context.Context) (*Server, error) {
	if dsn := os.Getenv(envDSN); dsn != "" {
		s, err := startEnv(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is set but unusable (unset it to use installed "+
				"PostgreSQL server binaries or a Docker engine instead): %w", ErrUnavailable, envDSN, err)
		}
		return s, nil
	}
	s, localErr := startLocal(ctx)
	if localErr == nil {
		return s, nil
	}
	s, dockerErr := startDocker(ctx)
	if dockerErr == nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w; provide one of: "+
		"(1) set %s to a server's DSN (not set); "+
		"(2) install PostgreSQL server binaries (initdb, postgres; or point %s at their directory): %w; "+
		"(3) run a Docker engine for a postgres:15 container: %w",
		ErrUnavailable, envDSN, envPGBin, localErr, dockerErr)
}
