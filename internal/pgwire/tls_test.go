package pgwire_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// Over TLS, read deadlines (keepalive) leave the connection usable, and
// Cancel's request travels in TLS too: the forwarder in front of the server
// accepts nothing else.
func TestTLS(t *testing.T) {
	t.Parallel()
	dsn, cfg := testDB(t)
	fwd := newTLSForwarder(t)
	cfg.Host, cfg.Port, cfg.Fallbacks = "127.0.0.1", uint16(fwd.port()), nil
	cfg.TLSConfig = &tls.Config{InsecureSkipVerify: true} // the forwarder's certificate is made up
	probing := connect(t, cfg, pgwire.Options{Keepalive: 100 * time.Millisecond})
	await(t, "three probes", func() bool { return probing.Probes() >= 3 || probing.Err() != nil })
	if got := do(t, probing, "select 'over tls'"); got[0] != "over tls" {
		t.Fatalf("Do after keepalive probes = %q", got)
	}
	// TLS buffers what it decrypts, out of the kernel's sight: the watcher
	// reads every answer and hands it over.
	if pgwire.ReadsOwn(probing) || pgwire.OwnReads(probing) != 0 {
		t.Errorf("over TLS, callers read %d answers themselves; want 0, all handed over", pgwire.OwnReads(probing))
	}

	// Without keepalive, which would end a session silent in a lock wait.
	s := connect(t, cfg, pgwire.Options{})

	other := otherConn(t, dsn)
	exec(t, other, "select pg_catalog.pg_advisory_lock(14,14)")
	answers := make(chan answer, 1)
	if err := s.Send("select pg_catalog.pg_advisory_lock(14,14)", func(res pgwire.Result, err error) {
		answers <- answer{res, err}
	}); err != nil {
		t.Fatal(err)
	}
	awaitWaiting(t, other, s.PID())
	if err := s.Cancel(t.Context()); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if a := receive(t, answers); a.err != nil || sqlState(a.res.Err) != "57014" {
		t.Errorf("cancelled lock wait: %v %v; want statement error 57014", a.err, a.res.Err)
	}
	if n := fwd.handshakes.Load(); n != 3 {
		t.Errorf("%d TLS handshakes; want 3 (two sessions' and the cancel request's)", n)
	}
	if n := fwd.refused.Load(); n != 0 {
		t.Errorf("%d connections without SSLRequest; want 0", n)
	}
	if got := do(t, s, "select 'after cancel'"); got[0] != "after cancel" {
		t.Errorf("after Cancel: %q", got)
	}
}

// tlsForwarder terminates PostgreSQL's TLS (SSLRequest, then a handshake)
// and forwards the plaintext to the test server. It refuses connections that
// do not start with SSLRequest.
type tlsForwarder struct {
	ln         net.Listener
	target     string
	cfg        *tls.Config
	handshakes atomic.Int64
	refused    atomic.Int64

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn // closed by close
	closed bool
}

func newTLSForwarder(t *testing.T) *tlsForwarder {
	t.Helper()
	srv := pgtest.Require(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsForwarder{
		ln:     ln,
		target: net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())),
		cfg:    &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
	}
	f.wg.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

func (f *tlsForwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *tlsForwarder) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Go(func() { f.serve(c) })
	}
}

// track records c for close and reports false if the forwarder is closed.
func (f *tlsForwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns = append(f.conns, c)
	return true
}

func (f *tlsForwarder) serve(c net.Conn) {
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	if binary.BigEndian.Uint32(req[0:4]) != 8 || binary.BigEndian.Uint32(req[4:8]) != 80877103 {
		f.refused.Add(1)
		c.Close()
		return
	}
	if _, err := c.Write([]byte{'S'}); err != nil {
		return
	}
	tc := tls.Server(c, f.cfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	f.handshakes.Add(1)
	server, err := net.Dial("tcp", f.target)
	if err != nil {
		c.Close()
		return
	}
	if !f.track(server) {
		return
	}
	f.wg.Go(func() {
		_, _ = io.Copy(server, tc)
		server.(*net.TCPConn).CloseWrite()
	})
	_, _ = io.Copy(tc, server)
	c.Close()
}

func (f *tlsForwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	conns := f.conns
	f.closed = true
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	f.wg.Wait()
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
