package pgwire

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Connect opens a server session with cfg, blocking until it is ready for
// queries or ctx is done, and returns it with its watcher goroutine running.
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
	params := maps.Clone(hc.ParameterStatuses)
	if params == nil {
		params = make(map[string]string)
	}
	if err := quiesce(hc, params); err != nil {
		hc.Conn.Close()
		return nil, err
	}
	// pgconn leaves no deadline behind on success, but a DialFunc might.
	if err := hc.Conn.SetDeadline(time.Time{}); err != nil {
		hc.Conn.Close()
		return nil, err
	}
	s := &Session{
		conn:      hc.Conn,
		raddr:     hc.Conn.RemoteAddr(),
		rd:        newMsgReader(hc.Conn),
		wfd:       newWatchFD(hc.Conn),
		cfg:       hc.Config,
		tlsConfig: hc.TLSConfig,
		pid:       hc.PID,
		secretKey: hc.SecretKey,
		keepalive: max(opts.Keepalive, 0),
		probe:     opts.Probe,
		onDead:    opts.OnDead,
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
		wake:      make(chan struct{}, 1),
	}
	if s.wfd == nil {
		s.role = roleWatcher // for good: see Session.readAlways
	}
	if s.cfg == nil {
		s.cfg = cfg
	}
	s.params.Store(&params)
	go s.watch()
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

// quiesce stops pgconn's reading of the connection before the session reads
// it itself. pgconn reads through a background reader, which it starts when
// a write is slow (under load, while connecting) and which may still have a
// read under way after the connection is hijacked: that read would take the
// answer to the session's first query. A read deadline in the past ends it,
// and reading through pgconn's Frontend until the deadline's error collects
// what it holds, recording parameters in params.
func quiesce(hc *pgconn.HijackedConn, params map[string]string) error {
	if err := hc.Conn.SetReadDeadline(aLongTimeAgo); err != nil {
		return err
	}
	for {
		msg, err := hc.Frontend.Receive()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ParameterStatus:
			params[m.Name] = m.Value
		case *pgproto3.NoticeResponse, *pgproto3.NotificationResponse:
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		default:
			return fmt.Errorf("%w: %T before the first query", errProtocol, msg)
		}
	}
}
