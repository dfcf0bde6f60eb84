package pgtest

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// proxyDialTimeout bounds the dial to the target for one connection.
	proxyDialTimeout = 10 * time.Second
	proxyBufferSize  = 32 << 10
)

// Proxy forwards TCP connections from a loopback listener to a target
// address, for fault injection: Freeze makes the network silent, CutAll
// resets connections. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex
	gate   chan struct{} // closed while forwarding, open while frozen
	links  map[*link]struct{}
	closed bool
}

// link is one client connection and its connection to the target.
type link struct {
	client net.Conn
	ctx    context.Context // done once the link is torn down
	cancel context.CancelFunc

	mu     sync.Mutex
	server net.Conn // nil until dialed
	closed bool
}

// NewProxy listens on 127.0.0.1 on a free port and forwards each connection
// it accepts to target (host:port), dialed when the connection arrives. The
// caller must Close it.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return nil, err
	}
	gate := make(chan struct{})
	close(gate)
	p := &Proxy{target: target, ln: ln, gate: gate, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the host:port to dial to reach the target through the proxy.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port returns the port the proxy listens on.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Freeze stops forwarding bytes in both directions, on current connections
// and on those accepted later, without closing anything: bytes are held
// back, not read, and not delivered, and no close is passed on, as on a
// network that went silent. New connections are accepted but not dialed
// through. It does nothing if the proxy is already frozen.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already frozen
	}
}

// Thaw resumes forwarding, delivering what Freeze held back. It does nothing
// if the proxy is not frozen.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// CutAll closes every current connection abruptly, on both sides, with a
// reset (SO_LINGER 0) rather than an orderly close. The proxy goes on
// accepting new connections.
func (p *Proxy) CutAll() {
	for _, l := range p.snapshot() {
		l.abort()
	}
}

// Close stops listening, closes every connection abruptly and returns once
// all of the proxy's goroutines have exited. Later calls return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.CutAll()
	p.wg.Wait()
	return err
}

// snapshot returns the current links.
func (p *Proxy) snapshot() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

// openLinks returns how many client connections the proxy holds open.
func (p *Proxy) openLinks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// holds reports whether the proxy holds open a connection from the client
// address addr.
func (p *Proxy) holds(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		if l.client.RemoteAddr().String() == addr {
			return true
		}
	}
	return false
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A failed handshake or a transient shortage (EMFILE): the
			// listener still works, so pause briefly rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &link{client: c, ctx: ctx, cancel: cancel}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.abort()
			continue
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for l and forwards both ways until both directions
// have ended or l is torn down.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	if !p.await(l) {
		return
	}
	dialCtx, cancel := context.WithTimeout(l.ctx, proxyDialTimeout)
	var d net.Dialer
	server, err := d.DialContext(dialCtx, "tcp", p.target)
	cancel()
	if err != nil {
		l.abort()
		return
	}
	if !l.attach(server) {
		return
	}
	var pumps sync.WaitGroup
	pumps.Add(1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer pumps.Done()
		p.pump(l, l.client, server)
	}()
	p.pump(l, server, l.client)
	pumps.Wait()
}

// pump copies src to dst, pausing while the proxy is frozen. An orderly end
// of src is passed on as a half-close of dst; any other failure tears the
// link down.
func (p *Proxy) pump(l *link, dst, src net.Conn) {
	buf := make([]byte, proxyBufferSize)
	for {
		if !p.await(l) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			// Bytes read just as Freeze is called are held here.
			if !p.await(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.abort()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if !p.await(l) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
		if err != nil {
			l.abort()
			return
		}
	}
}

// await blocks while the proxy is frozen and reports whether l may go on.
func (p *Proxy) await(l *link) bool {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	select {
	case <-gate:
		return l.ctx.Err() == nil
	case <-l.ctx.Done():
		return false
	}
}

// attach records the connection to the target, or closes it and reports
// false if l was torn down meanwhile.
func (l *link) attach(server net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		server.Close()
		return false
	}
	l.server = server
	return true
}

// abort tears l down with resets on both sides.
func (l *link) abort() { l.shut(true) }

// close tears l down with orderly closes.
func (l *link) close() { l.shut(false) }

func (l *link) shut(reset bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.cancel()
	for _, c := range []net.Conn{l.client, l.server} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// ProxiedPool returns a Proxy in front of s (see Server.Proxy) and a pool on
// dsn (see NewPool, then configure) whose every connection goes through it
// (see ViaProxy). When the test ends the proxy is thawed before the pool is
// checked, so that a test that ends while it is frozen does not hold the
// check up, and closed after.
func (s *Server) ProxiedPool(t testing.TB, dsn string, configure ...func(*pgxpool.Config)) (*Proxy, *pgxpool.Pool) {
	t.Helper()
	p := s.Proxy(t)
	pool := NewPool(t, dsn, append(slices.Clone(configure), ViaProxy(p, false))...)
	t.Cleanup(p.Thaw) // registered after the pool's check, so it runs first
	return p, pool
}
