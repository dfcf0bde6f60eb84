package pgwire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Cancel asks the server to cancel the statement the session is running
// now, if any, blocking until the server has taken the request (it closes
// the connection it was sent on) or ctx is done. The cancelled query's answer
// then carries 57014 in Result.Err, and the session stays usable.
//
// The request names the session, not a query: with queries pipelined, it
// cancels whichever one the server is running when it arrives, which may be
// a later one than the caller had in mind, or none. Success means only that
// the request was delivered.
//
// It dials the session's server address with the config's DialFunc, using
// TLS as the session does, so the process ID and secret key are never sent
// in the clear over a connection the session protects. It returns the
// dialing, TLS or write error, or ctx.Err() (wrapped) if ctx ended first.
func (s *Session) Cancel(ctx context.Context) error {
	conn, err := s.dialCancel(ctx)
	if err != nil {
		return fmt.Errorf("pgwire: cancel: %w", ctxErr(ctx, err))
	}
	defer conn.Close()
	// Bound the exchange by ctx: its deadline, or its cancellation.
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if s.tlsConfig != nil {
		if conn, err = s.cancelTLS(conn); err != nil {
			return fmt.Errorf("pgwire: cancel: %w", ctxErr(ctx, err))
		}
		defer conn.Close()
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: s.pid, SecretKey: s.secretKey}).Encode(nil)
	if err != nil {
		return fmt.Errorf("pgwire: cancel: %w", err)
	}
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("pgwire: cancel: %w", ctxErr(ctx, err))
	}
	// The server answers nothing and closes the connection once it has
	// signalled the backend; waiting for that, as libpq does, means that
	// the cancellation is under way when Cancel returns.
	if _, err := io.Copy(io.Discard, conn); err != nil && ctx.Err() != nil {
		return fmt.Errorf("pgwire: cancel: %w", ctx.Err())
	}
	return nil
}

// dialCancel opens a connection to the session's server for a cancel
// request.
func (s *Session) dialCancel(ctx context.Context) (net.Conn, error) {
	dial := s.cfg.DialFunc
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	addr := s.raddr
	if addr != nil && addr.Network() != "unix" {
		return dial(ctx, addr.Network(), addr.String())
	}
	// A Unix socket's peer name is the path the server bound, relative to
	// its directory: dial the configured one (also for a DialFunc's
	// connection that knows no peer).
	network, address := pgconn.NetworkAddress(s.cfg.Host, s.cfg.Port)
	return dial(ctx, network, address)
}

// cancelTLS wraps conn in TLS as the session's connection was: directly, or
// after PostgreSQL's SSLRequest.
func (s *Session) cancelTLS(conn net.Conn) (net.Conn, error) {
	cfg := s.tlsConfig
	if s.cfg.SSLCertMode == "disable" {
		// sslcertmode=disable: never present a client certificate.
		cfg = cfg.Clone()
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return new(tls.Certificate), nil
		}
	}
	if s.cfg.SSLNegotiation != "direct" {
		req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		if _, err := conn.Write(req); err != nil {
			return nil, err
		}
		var answer [1]byte
		if _, err := io.ReadFull(conn, answer[:]); err != nil {
			return nil, err
		}
		if answer[0] != 'S' {
			return nil, errors.New("the server refused TLS for the cancel request")
		}
	}
	return tls.Client(conn, cfg), nil
}

// ctxErr returns ctx's error in place of err when ctx is done, since a
// deadline set from ctx then caused err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
