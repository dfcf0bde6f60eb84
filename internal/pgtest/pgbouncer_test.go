package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// backendPID asks, through conn, which server process answers.
func backendPID(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) uint32 {
	t.Helper()
	var pid int64
	if err := q.QueryRow(ctx, "SELECT pg_backend_pid()::int8").Scan(&pid); err != nil {
		t.Fatalf("pg_backend_pid(): %v", err)
	}
	return uint32(pid)
}

// poolOf reads the pooler's pool, failing t on error.
func poolOf(t *testing.T, ctx context.Context, b *PgBouncer) PgBouncerPool {
	t.Helper()
	p, err := b.Pool(ctx)
	if err != nil {
		t.Fatalf("Pool: %v", err)
	}
	return p
}

// TestPgBouncer_transactionMode checks the facts the library's pooler guard
// rests on: a client of PgBouncer is told a process ID that is not its
// server session's, and clients take turns on the pool's sessions.
func TestPgBouncer_transactionMode(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	dsn := srv.CreateDatabase(t)
	b := srv.StartPgBouncer(t, dsn, PgBouncerConfig{PoolSize: 1})
	t.Logf("%s on port %d", b.Version(), b.Port())
	if !strings.HasPrefix(b.Version(), "PgBouncer ") {
		t.Errorf("Version() = %q; want PgBouncer's SHOW VERSION", b.Version())
	}
	if b.PoolMode() != PoolTransaction || b.PoolSize() != 1 {
		t.Errorf("PoolMode(), PoolSize() = %q, %d; want transaction, 1", b.PoolMode(), b.PoolSize())
	}

	u, err := url.Parse(b.DSN())
	if err != nil {
		t.Fatalf("DSN is not a URL: %v", err)
	}
	if pw, _ := u.User.Password(); pw != srv.Password() || u.Port() != strconv.Itoa(b.Port()) || u.Hostname() != loopback {
		t.Errorf("DSN = %s; want the server's password, on %s port %d", b.Redact(b.DSN()), loopback, b.Port())
	}
	if u.Path != "/"+parseConfig(t, dsn).Database {
		t.Errorf("DSN database = %s; want the one of the DSN given", u.Path)
	}
	if strings.Contains(b.Redact(b.DSN()), srv.Password()) {
		t.Error("Redact(DSN()) shows the password")
	}

	c1 := connect(t, ctx, parseConfig(t, b.DSN()))
	c2 := connect(t, ctx, parseConfig(t, b.DSN()))
	// Statements with arguments go through the extended protocol, as the
	// library's do.
	var pid1, pid2 int64
	if err := c1.QueryRow(ctx, "SELECT pg_backend_pid()::int8 + $1", 0).Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	if err := c2.QueryRow(ctx, "SELECT pg_backend_pid()::int8 + $1", 0).Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	if pid1 != pid2 {
		t.Errorf("two clients of a pool of 1 ran on backends %d and %d; want one shared", pid1, pid2)
	}
	announced1, announced2 := c1.PgConn().PID(), c2.PgConn().PID()
	t.Logf("announced PIDs %d and %d, backend %d", announced1, announced2, pid1)
	if int64(announced1) == pid1 || int64(announced2) == pid1 {
		t.Errorf("a client was told the backend's own PID %d; want PgBouncer's made-up one", pid1)
	}
	if announced1 == announced2 {
		t.Errorf("two clients were told the same PID %d; want one each", announced1)
	}
	pids, err := b.ServerPIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || int64(pids[0]) != pid1 {
		t.Errorf("ServerPIDs() = %v; want [%d]", pids, pid1)
	}
	p := poolOf(t, ctx, b)
	if p.ClientsActive != 2 || p.ServersActive+p.ServersIdle+p.ServersUsed != 1 {
		t.Errorf("Pool() = %+v; want 2 clients on 1 server session", p)
	}
}

// TestPgBouncer_pgxStatementCache shows why DSN sets
// default_query_exec_mode=exec: pgx's default statement cache prepares named
// statements in the server session, which the next client on that session
// then cannot prepare again.
func TestPgBouncer_pgxStatementCache(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	b := srv.StartPgBouncer(t, srv.CreateDatabase(t), PgBouncerConfig{PoolSize: 1})
	cached := parseConfig(t, b.DSN())
	cached.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	c1, c2 := connect(t, ctx, cached), connect(t, ctx, cached)
	const sql = "SELECT $1::int + 1"
	var n int
	if err := c1.QueryRow(ctx, sql, 1).Scan(&n); err != nil {
		t.Fatalf("first client: %v", err)
	}
	err := c2.QueryRow(ctx, sql, 1).Scan(&n)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P05" {
		t.Errorf("second client with pgx's statement cache: got %v; want SQLSTATE 42P05 (prepared statement already exists)", err)
	}
	// With DSN's exec mode, both work.
	e1, e2 := connect(t, ctx, parseConfig(t, b.DSN())), connect(t, ctx, parseConfig(t, b.DSN()))
	for _, c := range []*pgx.Conn{e1, e2, e1} {
		if err := c.QueryRow(ctx, sql, 1).Scan(&n); err != nil {
			t.Errorf("exec mode: %v", err)
		}
	}
}

// TestPgBouncer_transactionPins checks that a transaction keeps its server
// session, while other clients' statements run on other sessions.
func TestPgBouncer_transactionPins(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	b := srv.StartPgBouncer(t, srv.CreateDatabase(t), PgBouncerConfig{PoolSize: 2})
	c1 := connect(t, ctx, parseConfig(t, b.DSN()))
	c2 := connect(t, ctx, parseConfig(t, b.DSN()))
	tx, err := c1.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	inTx := backendPID(t, ctx, tx)
	for range 3 {
		if other := backendPID(t, ctx, c2); other == inTx {
			t.Fatalf("a statement of another client ran on backend %d, inside a transaction", other)
		}
		if again := backendPID(t, ctx, tx); again != inTx {
			t.Fatalf("the transaction moved from backend %d to %d", inTx, again)
		}
	}
	if p := poolOf(t, ctx, b); p.ServersActive != 1 {
		t.Errorf("Pool() = %+v; want 1 server session linked to a client (the transaction)", p)
	}
}

// TestPgBouncer_sessionMode checks that in session mode a client keeps one
// server session, but is still told a made-up PID.
func TestPgBouncer_sessionMode(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	b := srv.StartPgBouncer(t, srv.CreateDatabase(t), PgBouncerConfig{PoolMode: PoolSession, PoolSize: 2})
	c1 := connect(t, ctx, parseConfig(t, b.DSN()))
	c2 := connect(t, ctx, parseConfig(t, b.DSN()))
	pid1, pid2 := backendPID(t, ctx, c1), backendPID(t, ctx, c2)
	if pid1 == pid2 {
		t.Errorf("two clients in session mode share backend %d", pid1)
	}
	for range 3 {
		if got := backendPID(t, ctx, c1); got != pid1 {
			t.Errorf("a client in session mode moved from backend %d to %d", pid1, got)
		}
	}
	if c1.PgConn().PID() == pid1 || c2.PgConn().PID() == pid2 {
		t.Errorf("a client in session mode was told its backend's PID; want a made-up one")
	}
}

// TestPgBouncer_statementMode checks that statement mode refuses
// transactions, so a transaction-scoped lock cannot be taken through it.
func TestPgBouncer_statementMode(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	b := srv.StartPgBouncer(t, srv.CreateDatabase(t), PgBouncerConfig{PoolMode: PoolStatement})
	c := connect(t, ctx, parseConfig(t, b.DSN()))
	if err := selectOne(ctx, c); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}
	_, err := c.Exec(ctx, "BEGIN; SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08P01" {
		t.Errorf("a transaction in statement mode: got %v; want SQLSTATE 08P01", err)
	}
}

// TestPgBouncer_runsAsServerUser checks that, as root, the pooler runs as
// the postgres OS user, as the server does: it refuses to run as root.
func TestPgBouncer_runsAsServerUser(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	b := srv.StartPgBouncer(t, srv.CreateDatabase(t), PgBouncerConfig{})
	b.mu.Lock()
	pid := b.proc.cmd.Process.Pid
	b.mu.Unlock()
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(os.Geteuid())
	if want == "0" {
		u, err := user.Lookup(serverUserName)
		if err != nil {
			t.Fatal(err)
		}
		want = u.Uid
	}
	for line := range strings.Lines(string(status)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] != want {
			t.Errorf("pgbouncer runs as uid %s; want %s", f[1], want)
		}
	}
}

func TestPgBouncer_Stop(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	ctx := testContext(t)
	dsn := srv.CreateDatabase(t)
	b := srv.StartPgBouncer(t, dsn, PgBouncerConfig{})
	c := connect(t, ctx, parseConfig(t, b.DSN()))
	backend := backendPID(t, ctx, c)
	b.mu.Lock()
	pid := b.proc.cmd.Process.Pid
	b.mu.Unlock()

	if err := b.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("second Stop: %v; want nil", err)
	}
	if _, err := os.Stat(b.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s after Stop: %v; want it removed", b.dir, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pgbouncer %d after Stop: kill 0: %v; want ESRCH", pid, err)
	}
	if err := selectOne(ctx, c); err == nil {
		t.Error("a client of a stopped pooler still gets answers")
	}
	// The pooler's server session ends with it.
	admin := connect(t, ctx, parseConfig(t, dsn))
	if !eventually(ctx, func() bool { return !backendAlive(t, ctx, admin, backend) }) {
		t.Errorf("backend %d of the stopped pooler still runs", backend)
	}
}

func TestStartPgBouncer_badInput(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	bin := RequirePgBouncer(t)
	ctx := testContext(t)
	dsn := srv.CreateDatabase(t)
	tests := []struct {
		name string
		dsn  string
		cfg  PgBouncerConfig
	}{
		{"pool mode", dsn, PgBouncerConfig{PoolMode: "bogus"}},
		{"database name", strings.Replace(dsn, "/pgtest_", "/pgtest%20x_", 1), PgBouncerConfig{}},
		{"DSN", "postgres://u:" + srv.Password() + "@[::1", PgBouncerConfig{}},
		{"keyword/value DSN", "host=h password= " + srv.Password() + " port=x", PgBouncerConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := startPgBouncer(ctx, bin, tt.dsn, tt.cfg)
			if err == nil {
				_ = b.Stop()
				t.Fatal("startPgBouncer succeeded")
			}
			t.Logf("startPgBouncer: %v", redactError(err, srv.Password()))
			// StartPgBouncer redacts it too; the error should not need it.
			if strings.Contains(err.Error(), srv.Password()) {
				t.Errorf("the error shows the password: %v", redactError(err, srv.Password()))
			}
		})
	}
}

// A port taken between its choice and the pooler's start makes the pooler
// start on another one.
func TestStartPgBouncer_portTaken(t *testing.T) {
	// Serial: it replaces bouncerPort, which every pooler start uses.
	srv := Require(t)
	bin := RequirePgBouncer(t)
	dsn := srv.CreateDatabase(t)
	taken, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	var picks int
	bouncerPort = func() (int, error) {
		picks++
		if picks == 1 {
			return takenPort, nil
		}
		return freePort()
	}
	t.Cleanup(func() { bouncerPort = freePort })
	b, err := startPgBouncer(testContext(t), bin, dsn, PgBouncerConfig{})
	if err != nil {
		t.Fatalf("startPgBouncer: %v", redactError(err, srv.Password()))
	}
	defer func() {
		if err := b.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if picks != 2 || b.Port() == takenPort {
		t.Errorf("pooler on port %d after %d picks; want a second port, not %d", b.Port(), picks, takenPort)
	}
}

// A server login the pooler cannot make surfaces to the client, without the
// password.
func TestPgBouncer_wrongServerPassword(t *testing.T) {
	t.Parallel()
	srv := Require(t)
	if srv.Password() == "" {
		t.Fatal("the server takes no password; the harness always sets one")
	}
	ctx := testContext(t)
	dsn := srv.CreateDatabase(t)
	cfg := parseConfig(t, dsn)
	wrong := "wrong-" + srv.Password()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(cfg.User, wrong)
	b := srv.StartPgBouncer(t, u.String(), PgBouncerConfig{})
	conn, err := pgx.Connect(ctx, b.DSN())
	if err == nil {
		err = selectOne(ctx, conn)
		conn.Close(ctx)
	}
	if err == nil {
		t.Fatal("a query went through a pooler that cannot log in to the server")
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), srv.Password()) {
		t.Errorf("the error shows the password: %v", err)
	}
	t.Logf("through the pooler: %v", err)
}

// fakeTB records how RequirePgBouncer ends a test, without ending the real
// one.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runFake calls RequirePgBouncer on f in a goroutine of its own, which f's
// Skip and Fatalf end.
func runFake(f *fakeTB) string {
	var bin string
	var wg sync.WaitGroup
	wg.Go(func() { bin = RequirePgBouncer(f) })
	wg.Wait()
	return bin
}

func TestRequirePgBouncer(t *testing.T) {
	// Serial: t.Setenv, and it replaces pgbouncerPlaces.
	if bin := runFake(&fakeTB{TB: t}); bin == "" || !isExecutable(bin) {
		t.Fatalf("RequirePgBouncer = %q; want the installed pgbouncer (.ci/run installs it)", bin)
	}

	// Without pgbouncer anywhere:
	t.Setenv("PATH", t.TempDir())
	saved := pgbouncerPlaces
	pgbouncerPlaces = []string{filepath.Join(t.TempDir(), "pgbouncer")}
	t.Cleanup(func() { pgbouncerPlaces = saved })
	// A run that requires a server fails for the missing pooler; others skip.
	for _, tt := range requiredCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv(envRequireDB, tt.require)
			f := &fakeTB{TB: t}
			if bin := runFake(f); bin != "" {
				t.Fatalf("RequirePgBouncer = %q; want none found", bin)
			}
			msg := f.skipped
			if tt.want {
				msg = f.failed
			}
			if msg == "" || (f.skipped != "") == (f.failed != "") {
				t.Fatalf("skipped %q, failed %q; want only the %s", f.skipped, f.failed, map[bool]string{true: "failure", false: "skip"}[tt.want])
			}
			if !strings.Contains(msg, "apt-get install pgbouncer") {
				t.Errorf("message %q does not say how to install pgbouncer", msg)
			}
		})
	}
}

func TestBouncerConfig(t *testing.T) {
	t.Parallel()
	b := &PgBouncer{mode: PoolTransaction, poolSize: 3, dir: "/tmp/x", port: 6432}
	got := b.config(bouncerTarget{host: "127.0.0.1", port: 5432, user: "postgres", password: "pw", database: "db1"})
	for _, want := range []string{
		"db1 = host='127.0.0.1' port=5432 dbname='db1'\n",
		"listen_addr = 127.0.0.1\n",
		"listen_port = 6432\n",
		"auth_type = scram-sha-256\n",
		"pool_mode = transaction\n",
		"default_pool_size = 3\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "pw") {
		t.Errorf("config shows the password (it belongs in the auth file):\n%s", got)
	}
	if got, want := quoteAuth(`a"b`), `"a""b"`; got != want {
		t.Errorf("quoteAuth = %s; want %s", got, want)
	}
	if got, want := quoteConnValue(`it's \`), `'it\'s \\'`; got != want {
		t.Errorf("quoteConnValue = %s; want %s", got, want)
	}
}
