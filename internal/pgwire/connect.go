package pgwire

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Connect opens a server session with cfg, blocking until it is ready for
// queries or ctx is done, and returns it with its reader goroutine running.
// cfg must come from pgconn.ParseConfig (or a pgxpool or pgx config's
// ConnConfig.Config), so its TLS, authentication, DialFunc, RuntimeParams and
// hooks apply; it is not modified, and must not be modified while the session
// lives (Cancel dials with its DialFunc). Its OnNotice and OnNotification are
// not called once connected. ctx bounds the connection only, not the
// session. On failure it returns pgconn's error.
func Connect(ctx context.Context, cfg *pgconn.Config, opts Options) (*Session, error) {
	if cfg == nil {
		return nil, errors.New("pgwire: Connect with a nil config")
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	if hc.TxStatus != 'I' {
		hc.Conn.Close()
		return nil, fmt.Errorf("pgwire: the new session is in transaction status %q; want idle", hc.TxStatus)
	}
	// pgconn leaves no deadline behind on success, but a DialFunc might.
	if err := hc.Conn.SetDeadline(time.Time{}); err != nil {
		hc.Conn.Close()
		return nil, err
	}
	s := &Session{
		conn:      hc.Conn,
		raddr:     hc.Conn.RemoteAddr(),
		fe:        hc.Frontend,
		cfg:       hc.Config,
		tlsConfig: hc.TLSConfig,
		pid:       hc.PID,
		secretKey: hc.SecretKey,
		keepalive: max(opts.Keepalive, 0),
		probe:     opts.Probe,
		onDead:    opts.OnDead,
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
	if s.cfg == nil {
		s.cfg = cfg
	}
	params := maps.Clone(hc.ParameterStatuses)
	if params == nil {
		params = make(map[string]string)
	}
	s.params.Store(&params)
	go s.read()
	return s, nil
}

// PID returns the server process ID of the session, as pg_backend_pid()
// reports it and pg_locks.pid shows it.
func (s *Session) PID() uint32 { return s.pid }

// ParameterStatus returns the value of a parameter the server reports
// (server_version, in_hot_standby, application_name, TimeZone, …): its value
// at connection, or a later one the server sent, which is seen before the
// answer to the query that changed it. It returns "" for a parameter never
// reported.
func (s *Session) ParameterStatus(name string) string { return (*s.params.Load())[name] }

// Probes returns the number of keepalive probes sent so far.
func (s *Session) Probes() int64 { return s.probes.Load() }

// Done returns a channel closed when the session ends, by Close or because
// the server or the network ended it; Err then says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session lives. Once Done is closed it returns
// ErrClosed after Close, or otherwise an error matching ErrClosed that wraps
// the cause: the server's FATAL error as a *pgconn.PgError (57P01 after
// pg_terminate_backend), ErrSilent, or the read or write error.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
