package pgtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

const (
	// superuser is the role initdb creates and the harness connects as.
	superuser = "postgres"
	// loopback is the only address harness-made servers listen on.
	loopback = "127.0.0.1"
)

// errStopped reports an operation on a server that was stopped.
var errStopped = errors.New("pgtest: server stopped")

// localServer is a throwaway server run from the installed binaries. Its
// temporary directory holds data/ (the cluster), socket/ (the private Unix
// socket directory) and postgres.log (the server's stdout and stderr).
type localServer struct {
	bin      string // directory of initdb, postgres, pg_basebackup
	as       runAs
	dir      string
	password string
	port     int      // set before the server is first started, fixed after
	settings []string // more -c name=value settings for postgres

	mu       sync.Mutex
	proc     *process // nil while not running
	stopped  bool
	standbys []*localServer
	primary  *localServer // the server a standby follows; nil for a primary
}

// startLocal initialises a cluster in a temporary directory and starts it,
// with settings ("name=value") on top of the harness's own.
func startLocal(ctx context.Context, settings ...string) (*Server, error) {
	bin, err := findBinDir(ctx)
	if err != nil {
		return nil, err
	}
	l, err := newLocalServer(bin, newPassword())
	if err != nil {
		return nil, err
	}
	l.settings = settings
	if err := l.initdb(ctx); err != nil {
		return nil, errors.Join(err, l.removeDir())
	}
	if err := l.startOnFreePort(ctx); err != nil {
		return nil, errors.Join(err, l.removeDir())
	}
	return l.server(), nil
}

// serverDir returns the identity that runs the harness's server processes and
// a new temporary directory of the harness's (mode 0700) for one of them,
// having swept away those that crashed runs left behind.
func serverDir() (runAs, string, error) {
	as, err := serverIdentity()
	if err != nil {
		return runAs{}, "", err
	}
	sweepStaleDirs()
	dir, err := os.MkdirTemp("", dirPattern)
	return as, dir, err
}

// newLocalServer makes the temporary directory, with its socket directory,
// owned by the identity that runs the server and private to it.
func newLocalServer(bin, password string) (*localServer, error) {
	as, dir, err := serverDir()
	if err != nil {
		return nil, err
	}
	l := &localServer{bin: bin, as: as, dir: dir, password: password}
	if err := claimDir(dir); err != nil {
		return nil, errors.Join(err, l.removeDir())
	}
	if err := os.Mkdir(l.socketDir(), 0o700); err != nil {
		return nil, errors.Join(err, l.removeDir())
	}
	if err := as.give(dir); err != nil {
		return nil, errors.Join(err, l.removeDir())
	}
	return l, nil
}

func (l *localServer) dataDir() string   { return filepath.Join(l.dir, "data") }
func (l *localServer) socketDir() string { return filepath.Join(l.dir, "socket") }
func (l *localServer) logPath() string   { return filepath.Join(l.dir, "postgres.log") }

func (l *localServer) removeDir() error { return os.RemoveAll(l.dir) }

// dsn is the URL of the server's maintenance database.
func (l *localServer) dsn() string { return superuserDSN(l.password, l.port) }

// superuserDSN is the URL to connect as the superuser to the maintenance
// database of a harness-made server on the loopback port.
func superuserDSN(password string, port int) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, password),
		Host:     net.JoinHostPort(loopback, strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func (l *localServer) server() *Server {
	return &Server{kind: kindLocal, host: loopback, port: l.port, password: l.password, dsn: l.dsn(), own: l}
}

// stop stops the server's standbys, then the server, and removes its
// directory.
func (l *localServer) stop() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil
	}
	l.stopped = true
	var errs []error
	for _, s := range l.standbys {
		errs = append(errs, s.stop())
	}
	if l.proc != nil {
		errs = append(errs, l.proc.shutdown())
		l.proc = nil
	}
	errs = append(errs, l.removeDir())
	return errors.Join(errs...)
}

// restart shuts the server down fast and starts it again on the same port.
func (l *localServer) restart(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return errStopped
	}
	if l.proc != nil {
		err := l.proc.shutdown()
		l.proc = nil
		if err != nil {
			return err
		}
	}
	return l.startPostgres(ctx)
}

// StartPrivate starts a server of t's own from the installed binaries, with
// settings ("name=value", such as "max_locks_per_transaction=10") on top of
// the harness's, for a test that needs a server set up otherwise than the
// shared one, or that would disturb it. The server is stopped when t ends. It
// fails t, or skips it where a missing server may skip (see Unavailable),
// when no server can be started.
func StartPrivate(t testing.TB, settings ...string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := startLocal(ctx, settings...)
	if err != nil {
		Unavailable(t, "pgtest: a private server: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: stopping a private server: %v", err)
		}
	})
	return s
}
