package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

const (
	// portAttempts bounds the retries when a free port is taken before the
	// server binds it.
	portAttempts = 3
	// logTailBytes is how much of a server's log an error quotes.
	logTailBytes = 2048
)

// startOnFreePort starts the server for the first time, on a free port. The
// port is found by binding and releasing it, so another process may take it
// first; then another port is tried.
func (l *localServer) startOnFreePort(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for range portAttempts {
		if l.port, err = freePort(); err != nil {
			return err
		}
		err = l.startPostgres(ctx)
		if err == nil || !strings.Contains(err.Error(), "could not bind") {
			return err
		}
	}
	return err
}

// startPostgres starts the postmaster and waits until it accepts
// connections. The caller holds l.mu.
func (l *localServer) startPostgres(ctx context.Context) error {
	logf, err := os.OpenFile(l.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	// Not a CommandContext: the server outlives ctx, which only bounds the
	// start.
	args := []string{"-D", l.dataDir(), "-p", strconv.Itoa(l.port), "-k", l.socketDir(),
		"-c", "listen_addresses=" + loopback,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "max_wal_senders=4", "-c", "wal_level=replica"}
	for _, s := range l.settings {
		args = append(args, "-c", s)
	}
	cmd := l.command(context.Background(), "postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := startServerProcess(cmd)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := waitReady(ctx, l.dsn(), proc.done); err != nil {
		err = errors.Join(err, proc.shutdown())
		if proc.err != nil {
			err = fmt.Errorf("%w (%v)", err, proc.err)
		}
		return redactError(fmt.Errorf("postgres on port %d: %w; server log:\n%s", l.port, err, l.logTail(logStart)), l.password)
	}
	l.proc = proc
	return nil
}

// logTail returns the end of what the server logged since offset.
func (l *localServer) logTail(offset int64) string {
	f, err := os.Open(l.logPath())
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<30))
	if err != nil {
		return err.Error()
	}
	return lastBytes(b)
}

// lastBytes returns about logTailBytes from the end of b, from a line start.
func lastBytes(b []byte) string {
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(string(b))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
