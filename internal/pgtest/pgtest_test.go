package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { Main(m) }

// testTimeout bounds each test's own database work.
const testTimeout = 30 * time.Second

// testContext returns a context for a test's work, bounded by testTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a connection that is closed when the test ends.
func connect(t *testing.T, ctx context.Context, cfg *pgx.ConnConfig) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

func parseConfig(t *testing.T, dsn string) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	return cfg
}

// startProxy starts a proxy to srv, closed when the test ends, and a config
// whose every connection attempt goes through it.
func startProxy(t *testing.T, srv *Server) (*Proxy, *pgx.ConnConfig) {
	t.Helper()
	p, err := NewProxy(net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())))
	if err != nil {
		t.Fatalf("NewProxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Proxy.Close: %v", err)
		}
	})
	cfg := parseConfig(t, srv.DSN())
	cfg.Host, cfg.Port = loopback, uint16(p.Port())
	for _, fb := range cfg.Fallbacks {
		fb.Host, fb.Port = loopback, uint16(p.Port())
	}
	return p, cfg
}

func selectOne(ctx context.Context, conn *pgx.Conn) error {
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// backendAlive reports whether the backend with pid still exists.
func backendAlive(t *testing.T, ctx context.Context, admin *pgx.Conn, pid uint32) bool {
	t.Helper()
	var alive bool
	err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int32(pid)).Scan(&alive)
	if err != nil {
		t.Fatalf("query pg_stat_activity: %v", err)
	}
	return alive
}

// eventually polls cond every 10 ms until it holds or ctx ends.
func eventually(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

func TestServer_answers(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	conn := connect(t, ctx, parseConfig(t, srv.DSN()))
	if err := selectOne(ctx, conn); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}
	switch srv.Kind() {
	case kindEnv, kindLocal, kindDocker:
	default:
		t.Errorf("Kind() = %q; want env, local or docker", srv.Kind())
	}
	cfg := conn.Config()
	if cfg.Host != srv.Host() || int(cfg.Port) != srv.Port() {
		t.Errorf("DSN points at %s:%d; Host(), Port() = %s, %d", cfg.Host, cfg.Port, srv.Host(), srv.Port())
	}
}

func TestServer_password(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	if srv.Kind() == kindEnv {
		Unavailable(t, "the password of an external server is not the harness's")
	}
	u, err := url.Parse(srv.DSN())
	if err != nil {
		t.Fatalf("DSN is not a URL: %v", err)
	}
	if pw, ok := u.User.Password(); !ok || pw != srv.Password() {
		t.Errorf("DSN password = %q, %t; want Password() = %q", pw, ok, srv.Password())
	}
	if u.Hostname() != loopback || u.Query().Get("sslmode") != "disable" {
		t.Errorf("DSN = %s; want TCP on %s with sslmode=disable", redact(srv.DSN(), srv.Password()), loopback)
	}
	if len(srv.Password()) < 20 {
		t.Errorf("password has %d characters; want a long random one", len(srv.Password()))
	}

	// Host connections really need the password.
	ctx := testContext(t)
	cfg := parseConfig(t, srv.DSN())
	cfg.Password = "wrong-" + srv.Password()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a wrong password")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("wrong password: got %v; want SQLSTATE 28P01", err)
	}
}

// TestStart_second starts a second server: it must have its own password,
// and its Stop must leave nothing behind.
func TestStart_second(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	if srv.Kind() == kindEnv {
		Unavailable(t, "Start would return the same external server")
	}
	ctx := testContext(t)
	begin := time.Now()
	other, err := Start(ctx)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("a %s server started in %v", other.Kind(), time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() { _ = other.Stop() })

	if other.Password() == srv.Password() {
		t.Errorf("two servers share the password; want a random one each")
	}
	if other.Port() == srv.Port() {
		t.Errorf("two servers share port %d", srv.Port())
	}
	conn := connect(t, ctx, parseConfig(t, other.DSN()))
	if err := selectOne(ctx, conn); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}

	var dir string
	var pid int
	if l, ok := other.own.(*localServer); ok {
		dir, pid = l.dir, l.proc.cmd.Process.Pid
	}
	if err := other.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := other.Stop(); err != nil {
		t.Errorf("second Stop: %v; want nil", err)
	}
	if err := other.Restart(ctx); err == nil {
		t.Errorf("Restart after Stop: got nil; want an error")
	}
	if dir != "" {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s after Stop: %v; want it removed", dir, err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("postmaster %d after Stop: kill 0: %v; want ESRCH", pid, err)
		}
	}
}

func TestStart_unavailable(t *testing.T) {
	// Serial: t.Setenv.
	t.Setenv(envDSN, "")
	t.Setenv(envPGBin, t.TempDir())
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	begin := time.Now()
	srv, err := Start(testContext(t))
	if err == nil {
		_ = srv.Stop()
		t.Fatal("Start succeeded without binaries or Docker")
	}
	t.Logf("Start: %v", err)
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("Start took %v to fail; want it quick", took)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start: got %v; want ErrUnavailable", err)
	}
	for _, want := range []string{envDSN, "PostgreSQL server binaries", "Docker engine", envPGBin} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error %q does not mention %q", err, want)
		}
	}
}

func TestStart_envUnusable(t *testing.T) {
	// Serial: t.Setenv.
	port, err := freePort() // nobody listens there
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envDSN, "postgres://u:sekrit-pw@127.0.0.1:"+strconv.Itoa(port)+"/db?sslmode=disable&connect_timeout=2")
	srv, err := Start(testContext(t))
	if err == nil {
		_ = srv.Stop()
		t.Fatal("Start succeeded with a DSN where no server listens")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start: got %v; want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "sekrit-pw") {
		t.Errorf("Start error shows the password: %v", err)
	}
}

// requiredCases are settings of CI and ADVISORYLOCK_TEST_REQUIRE_DB, and
// whether each makes Required report true.
var requiredCases = []struct {
	name, ci, require string
	want              bool
}{
	{"nothing set", "", "", false},
	{"CI=true", "true", "", true},
	{"CI=1", "1", "", true},
	{"CI=false", "false", "", false},
	{"require=1", "", "1", true},
	{"require=0", "", "0", false},
}

func TestRequired(t *testing.T) {
	// Serial: its cases call t.Setenv.
	for _, tt := range requiredCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv(envRequireDB, tt.require)
			if got := Required(); got != tt.want {
				t.Errorf("Required() = %t; want %t", got, tt.want)
			}
		})
	}
}

func TestRedactError(t *testing.T) {
	t.Parallel()
	base := errors.New("auth failed for pw123 at pw123")
	err := redactError(base, "pw123")
	if got, want := err.Error(), "auth failed for [REDACTED] at [REDACTED]"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	if !errors.Is(err, base) {
		t.Error("redacted error does not wrap the original")
	}
	if got := redactError(base, ""); got != base {
		t.Errorf("redactError with no secret = %v; want the error unchanged", got)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, dsn, want string }{
		{"url", "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u:p@127.0.0.1:5432/db1?sslmode=disable"},
		{"url without path", "postgresql://u@h", "postgresql://u@h/db1"},
		{"keywords", "host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=db1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withDatabase(tt.dsn, "db1")
			if err != nil || got != tt.want {
				t.Errorf("withDatabase(%q) = %q, %v; want %q", tt.dsn, got, err, tt.want)
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil || cfg.Database != "db1" {
				t.Errorf("ParseConfig(%q): database %q, %v; want db1", got, cfg.Database, err)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"15", "9.6", 1},
		{"9.6", "10", -1},
		{"15", "15", 0},
		{"16", "15", 1},
		{"x", "9", -1},
	}
	for _, tt := range tests {
		got := compareVersions(parseVersion(tt.a), parseVersion(tt.b))
		if (got > 0) != (tt.want > 0) || (got < 0) != (tt.want < 0) {
			t.Errorf("compareVersions(%s, %s) = %d; want sign %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCreateDatabase_isolation(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	dsnA, dsnB := srv.CreateDatabase(t), srv.CreateDatabase(t)
	if dsnA == dsnB {
		t.Fatalf("two databases share the DSN %s", redact(dsnA, srv.Password()))
	}
	holder := connect(t, ctx, parseConfig(t, dsnA))
	rivalA := connect(t, ctx, parseConfig(t, dsnA))
	rivalB := connect(t, ctx, parseConfig(t, dsnB))

	const key = 424242
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(key)); err != nil {
		t.Fatalf("lock in A: %v", err)
	}
	tryLock := func(conn *pgx.Conn) bool {
		t.Helper()
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(key)).Scan(&ok); err != nil {
			t.Fatalf("try lock: %v", err)
		}
		return ok
	}
	if tryLock(rivalA) {
		t.Error("second session in A got the lock held in A")
	}
	if !tryLock(rivalB) {
		t.Error("session in B did not get the lock held in A; want databases isolated")
	}
}

func TestCreateDatabase_dropped(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	var name string
	t.Run("create", func(t *testing.T) {
		dsn := srv.CreateDatabase(t)
		name = parseConfig(t, dsn).Database
		// A session left open must not keep the database from being dropped.
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
	})
	admin := connect(t, ctx, parseConfig(t, srv.DSN()))
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test's cleanup", name)
	}
}

func TestServer_Restart(t *testing.T) {
	// Serial: restarting the server ends every session, the other tests' too.
	srv := Require(t)
	ctx := testContext(t)
	if srv.Kind() == kindEnv {
		if err := srv.Restart(ctx); !errors.Is(err, ErrNotOwned) {
			t.Errorf("Restart of env server: got %v; want ErrNotOwned", err)
		}
		return
	}
	before := connect(t, ctx, parseConfig(t, srv.DSN()))
	if err := selectOne(ctx, before); err != nil {
		t.Fatalf("SELECT 1 before restart: %v", err)
	}
	port, dsn := srv.Port(), srv.DSN()
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := selectOne(ctx, before); err == nil {
		t.Error("a connection from before the restart still works; want it broken")
	}
	if srv.Port() != port || srv.DSN() != dsn {
		t.Errorf("Restart moved the server to port %d; want %d", srv.Port(), port)
	}
	after := connect(t, ctx, parseConfig(t, srv.DSN()))
	if err := selectOne(ctx, after); err != nil {
		t.Fatalf("SELECT 1 after restart: %v", err)
	}
}

func TestServer_StartStandby(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	if srv.Kind() != kindLocal {
		if _, err := srv.StartStandby(ctx); !errors.Is(err, ErrNotOwned) {
			t.Errorf("StartStandby of a %s server: got %v; want ErrNotOwned", srv.Kind(), err)
		}
		return
	}
	begin := time.Now()
	standby, err := srv.StartStandby(ctx)
	if err != nil {
		t.Fatalf("StartStandby: %v", err)
	}
	t.Logf("standby started in %v", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := standby.Stop(); err != nil {
			t.Errorf("standby Stop: %v", err)
		}
	})
	if standby.Kind() != kindLocal || standby.Port() == srv.Port() {
		t.Errorf("standby: kind %s port %d; want local on a port other than %d", standby.Kind(), standby.Port(), srv.Port())
	}
	conn := connect(t, ctx, parseConfig(t, standby.DSN()))
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		t.Fatalf("pg_is_in_recovery: %v", err)
	}
	if !inRecovery {
		t.Error("pg_is_in_recovery() = false on the standby; want true")
	}
}

func TestProxy_forwards(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	p, cfg := startProxy(t, srv)
	if got, want := p.Addr(), net.JoinHostPort(loopback, strconv.Itoa(p.Port())); got != want {
		t.Errorf("Addr() = %s; want %s", got, want)
	}
	conn := connect(t, ctx, cfg)
	var got string
	if err := conn.QueryRow(ctx, "SELECT repeat('x', 100000)").Scan(&got); err != nil {
		t.Fatalf("query through proxy: %v", err)
	}
	if len(got) != 100000 {
		t.Errorf("got %d bytes through the proxy; want 100000", len(got))
	}
}

// proxied is a connection through a Proxy to the package's server, and an
// administrator's connection of its own, for tests of the proxy's faults.
type proxied struct {
	ctx   context.Context
	admin *pgx.Conn
	p     *Proxy
	cfg   *pgx.ConnConfig // through p
	conn  *pgx.Conn       // through p, checked to work
	pid   uint32          // conn's server process
}

func newProxied(t *testing.T) proxied {
	t.Helper()
	srv := Require(t)
	x := proxied{ctx: testContext(t)}
	x.admin = connect(t, x.ctx, parseConfig(t, srv.DSN()))
	x.p, x.cfg = startProxy(t, srv)
	x.conn = connect(t, x.ctx, x.cfg)
	if err := selectOne(x.ctx, x.conn); err != nil {
		t.Fatalf("SELECT 1 through the proxy: %v", err)
	}
	x.pid = x.conn.PgConn().PID()
	return x
}

func TestProxy_Freeze(t *testing.T) {
	t.Parallel()
	x := newProxied(t)
	ctx, admin, p, cfg, conn, pid := x.ctx, x.admin, x.p, x.cfg, x.conn, x.pid
	clientAddr := conn.PgConn().Conn().LocalAddr().String()

	p.Freeze()
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	begin := time.Now()
	err := selectOne(qctx, conn)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query through frozen proxy: got %v; want a deadline error", err)
	}
	if took := time.Since(begin); took < 250*time.Millisecond {
		t.Errorf("query failed after %v; want it to wait for the deadline", took)
	}
	// Silent, not closed: the proxy holds the sockets and the server has
	// noticed nothing.
	if !p.holds(clientAddr) {
		t.Error("proxy dropped the connection while frozen; want it held open")
	}
	if !backendAlive(t, ctx, admin, pid) {
		t.Error("backend ended while the proxy was frozen; want the session alive")
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	late, err := pgx.ConnectConfig(cctx, cfg.Copy())
	cancel()
	if err == nil {
		late.Close(ctx)
		t.Fatal("connected through a frozen proxy")
	}

	p.Thaw()
	// pgx closes a timed-out connection in the background, sending a cancel
	// request through the proxy; that needs the thaw to finish.
	select {
	case <-conn.PgConn().CleanupDone():
	case <-ctx.Done():
		t.Fatal("timed-out connection not cleaned up after Thaw")
	}
	fresh := connect(t, ctx, cfg.Copy())
	if err := selectOne(ctx, fresh); err != nil {
		t.Fatalf("SELECT 1 after Thaw: %v", err)
	}
	if !eventually(ctx, func() bool { return !backendAlive(t, ctx, admin, pid) }) {
		t.Error("backend of the timed-out connection still alive after Thaw")
	}
}

func TestProxy_CutAll(t *testing.T) {
	t.Parallel()
	x := newProxied(t)
	ctx, admin, p, cfg, conn, pid := x.ctx, x.admin, x.p, x.cfg, x.conn, x.pid

	p.CutAll()
	if err := selectOne(ctx, conn); err == nil {
		t.Fatal("SELECT 1 on a cut connection succeeded")
	}
	if !conn.IsClosed() {
		t.Error("cut connection not closed")
	}
	if !eventually(ctx, func() bool { return !backendAlive(t, ctx, admin, pid) }) {
		t.Error("backend of the cut connection still alive")
	}
	fresh := connect(t, ctx, cfg.Copy())
	if err := selectOne(ctx, fresh); err != nil {
		t.Fatalf("SELECT 1 through the proxy after CutAll: %v", err)
	}
}

func TestProxy_Close(t *testing.T) {
	// Serial: goleak looks for the proxy's goroutines in the whole process.
	srv := Require(t)
	ctx := testContext(t)
	baseline := goleak.IgnoreCurrent()
	p, err := NewProxy(net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())))
	if err != nil {
		t.Fatalf("NewProxy: %v", err)
	}
	defer p.Close() // for the failure paths; Close is idempotent
	cfg := parseConfig(t, srv.DSN())
	cfg.Host, cfg.Port = loopback, uint16(p.Port())
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through proxy: %v", err)
	}
	p.Freeze() // Close must also end goroutines waiting on a frozen proxy

	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v; want nil", err)
	}
	if n := p.openLinks(); n != 0 {
		t.Errorf("%d connections left after Close", n)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
	conn.Close(ctx)
	if err := goleak.Find(baseline); err != nil {
		t.Errorf("goroutines left after Close: %v", err)
	}
}

func TestSweepStaleDirs(t *testing.T) {
	// Serial: t.Setenv.
	t.Setenv("TMPDIR", t.TempDir())
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	makeDir := func(owner string) string {
		t.Helper()
		dir, err := os.MkdirTemp("", dirPattern)
		if err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	stale := makeDir(strconv.Itoa(dead.Process.Pid))
	live := makeDir(strconv.Itoa(os.Getppid()))
	unowned := makeDir("")

	sweepStaleDirs()

	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory of a dead owner: stat %v; want it removed", err)
	}
	for _, dir := range []string{live, unowned} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("stat %s: %v; want it kept", dir, err)
		}
	}
}

// AdvisoryLockPIDs, AwaitWaiters, AwaitHolders and TerminateHolder see the
// advisory locks of their own database only.
func TestAdvisoryLockPIDs(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dsn := Database(t)
	admin := connect(t, ctx, parseConfig(t, dsn))
	holder := connect(t, ctx, parseConfig(t, dsn))
	waiter := connect(t, ctx, parseConfig(t, dsn))
	elsewhere := connect(t, ctx, parseConfig(t, Database(t)))
	for _, c := range []*pgx.Conn{holder, elsewhere} {
		if _, err := c.Exec(ctx, "select pg_advisory_lock(1), pg_advisory_lock(2)"); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, "select pg_advisory_lock(1)")
		waited <- err
	}()
	AwaitWaiters(t, admin, 1)
	h, w := int32(holder.PgConn().PID()), int32(waiter.PgConn().PID())
	if got := AdvisoryLockPIDs(t, admin, "granted"); !slices.Equal(got, []int32{h, h}) {
		t.Errorf("granted: %v; want the holder's %d twice", got, h)
	}
	if got := AdvisoryLockPIDs(t, admin, "not granted"); !slices.Equal(got, []int32{w}) {
		t.Errorf("not granted: %v; want the waiter's %d", got, w)
	}
	if got := TerminateHolder(t, admin); got != h {
		t.Errorf("TerminateHolder ended %d; want the holder %d", got, h)
	}
	if err := <-waited; err != nil {
		t.Fatalf("the waiter's lock: %v", err)
	}
	AwaitHolders(t, admin, 1)
	if got := AdvisoryLockPIDs(t, admin, "true"); !slices.Equal(got, []int32{w}) {
		t.Errorf("after the holder ended: %v; want the waiter's %d alone", got, w)
	}
	if _, err := waiter.Exec(ctx, "select pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	if _, err := elsewhere.Exec(ctx, "select pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
}

// A pool from ProxiedPool goes through its proxy: frozen, it is silent.
func TestServer_ProxiedPool(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	p, pool := srv.ProxiedPool(t, Database(t))
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("Ping through the proxy: %v", err)
	}
	if n := p.openLinks(); n != 1 {
		t.Errorf("%d connections through the proxy; want the pool's 1", n)
	}
	p.Freeze()
	qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := pool.Ping(qctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping through the frozen proxy: %v; want a deadline error", err)
	}
	// The test ends frozen: the cleanup thaws the proxy before the pool's
	// check, which would otherwise hang.
}

// recordTB records the failures of a check without failing the real test.
type recordTB struct {
	testing.TB
	errors []string
	fatal  string
}

func (r *recordTB) Helper() {}

func (r *recordTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordTB) Fatal(args ...any) {
	r.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}

// run calls f with r in a goroutine of its own, which Fatal ends.
func (r *recordTB) run(f func(testing.TB)) *recordTB {
	var wg sync.WaitGroup
	wg.Go(func() { f(r) })
	wg.Wait()
	return r
}

func TestAssertNoSecrets(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55-xyz"
	texts := []string{"fine", "error: password " + secret + " rejected", "also fine"}
	r := (&recordTB{TB: t}).run(func(tb testing.TB) { AssertNoSecrets(tb, texts, "", "absent", secret) })
	if len(r.errors) != 1 || r.fatal != "" {
		t.Fatalf("errors %q, fatal %q; want one error", r.errors, r.fatal)
	}
	if strings.Contains(r.errors[0], secret) || !strings.Contains(r.errors[0], "password [REDACTED] rejected") {
		t.Errorf("error %q; want the text shown with the secret redacted", r.errors[0])
	}
	r = (&recordTB{TB: t}).run(func(tb testing.TB) { AssertNoSecrets(tb, texts[:1], secret) })
	if len(r.errors) != 0 || r.fatal != "" {
		t.Errorf("errors %q, fatal %q for a clean text; want none", r.errors, r.fatal)
	}
	r = (&recordTB{TB: t}).run(func(tb testing.TB) { AssertNoSecrets(tb, nil, secret) })
	if r.fatal == "" {
		t.Error("no texts: no failure; want one, the check proves nothing")
	}
}

func TestErrorChain(t *testing.T) {
	t.Parallel()
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	err := fmt.Errorf("top: %w", errors.Join(a, fmt.Errorf("mid: %w", b), c))
	var got []string
	for _, e := range ErrorChain(err) {
		got = append(got, e.Error())
	}
	want := []string{err.Error(), "a\nmid: b\nc", "a", "mid: b", "b", "c"}
	if !slices.Equal(got, want) {
		t.Errorf("ErrorChain = %q; want %q", got, want)
	}
	if ErrorChain(nil) != nil {
		t.Error("ErrorChain(nil) is not empty")
	}
}

func TestClosedPort(t *testing.T) {
	t.Parallel()
	port := ClosedPort(t)
	c, err := net.DialTimeout("tcp", net.JoinHostPort(loopback, strconv.Itoa(port)), time.Second)
	if err == nil {
		c.Close()
		t.Errorf("port %d accepted a connection; want it refused", port)
	}
}

// SecretDSNs' connection strings work, are refused or are denied, as they
// say, and each holds a secret.
func TestServer_SecretDSNs(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	dsns, secrets := srv.SecretDSNs(t, Database(t))
	if len(dsns) != 4 || len(secrets) != 3 || slices.Contains(secrets, "") {
		t.Fatalf("%d connection strings, secrets %d (empty: %v); want 4 and 3 non-empty", len(dsns), len(secrets), slices.Contains(secrets, ""))
	}
	for _, d := range dsns {
		if !slices.ContainsFunc(secrets[:2], func(s string) bool { return strings.Contains(d.DSN, s) }) {
			t.Errorf("%s: the connection string holds neither secret", d.Name)
		}
		conn, err := pgx.Connect(ctx, d.DSN)
		if err == nil {
			conn.Close(ctx)
		}
		var pgErr *pgconn.PgError
		switch {
		case d.OK != (err == nil):
			t.Errorf("%s: connect = %v; want success %v", d.Name, redactError(err, secrets[0]), d.OK)
		case strings.HasPrefix(d.Name, "wrong password") && (!errors.As(err, &pgErr) || pgErr.Code != "28P01"):
			t.Errorf("%s: connect = %v; want 28P01", d.Name, err)
		}
	}
}

// Promote makes a standby a primary that outlives the server it followed;
// a primary cannot be promoted.
func TestServer_Promote(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	primary := StartPrivate(t)
	if err := primary.Promote(ctx); err == nil {
		t.Error("Promote of a primary succeeded; want an error")
	}
	standby, err := primary.StartStandby(ctx)
	if err != nil {
		t.Fatalf("StartStandby: %v", err)
	}
	t.Cleanup(func() {
		if err := standby.Stop(); err != nil {
			t.Errorf("promoted standby's Stop: %v", err)
		}
	})
	if err := standby.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, ctx, parseConfig(t, standby.DSN()))
	var inRecovery bool
	if err := conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		t.Fatalf("the promoted server, once the old primary stopped: %v", err)
	}
	if inRecovery {
		t.Error("pg_is_in_recovery() = true after Promote; want false")
	}
	if _, err := conn.Exec(ctx, "create table promoted (id int)"); err != nil {
		t.Errorf("a write on the promoted server: %v", err)
	}
}
