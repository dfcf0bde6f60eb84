package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PgBouncer pool modes, for PgBouncerConfig.PoolMode.
const (
	PoolTransaction = "transaction"
	PoolSession     = "session"
	PoolStatement   = "statement"
)

const (
	// defaultBouncerPoolSize is the default_pool_size of a pooler started
	// with a zero PoolSize: small, so that clients share server sessions.
	defaultBouncerPoolSize = 2
	// bouncerStartTimeout bounds the start of a pooler.
	bouncerStartTimeout = 30 * time.Second
	// bouncerStopWait is how long Stop waits after each SIGTERM.
	bouncerStopWait = 3 * time.Second
)

// pgbouncerPlaces are looked in, after PATH, for the pgbouncer binary:
// Debian installs it in /usr/sbin, which is not on every user's PATH.
var pgbouncerPlaces = []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"}

// errNoPgBouncer reports that no pgbouncer binary was found.
var errNoPgBouncer = errors.New("pgtest: pgbouncer not found on PATH nor in " +
	strings.Join(pgbouncerPlaces, ", ") + "; install it (Debian: apt-get install pgbouncer)")

// PgBouncerConfig configures a pooler started by StartPgBouncer. The zero
// value is PgBouncer in transaction pooling mode with a pool of 2 server
// sessions.
type PgBouncerConfig struct {
	// PoolMode is pgbouncer's pool_mode: PoolTransaction (when empty),
	// PoolSession or PoolStatement.
	PoolMode string
	// PoolSize is default_pool_size: the most server sessions the pooler
	// opens for the database; 2 when zero or negative.
	PoolSize int
}

// PgBouncer is a running pgbouncer in front of one database of a test
// server, listening on a loopback port of its own. Clients log in with the
// user and password of the DSN it was started for; the pooler logs in to the
// server with the same. Its methods are safe for concurrent use.
type PgBouncer struct {
	dsn      string
	adminDSN string
	password string
	port     int
	mode     string
	poolSize int
	version  string
	database string // the database clients name, the same as on the server
	dir      string // pgtest-* temporary directory: config, auth file, log
	as       runAs

	mu      sync.Mutex
	proc    *process
	stopped bool
	stopErr error
}

// DSN returns the URL to connect through the pooler to the database it was
// started for, as the DSN's user; the password is in it, so never log it
// (see Redact).
//
// The URL sets pgx's default_query_exec_mode to exec. PgBouncer before 1.21
// does not manage prepared statements: pgx's default mode prepares named
// statements on whichever server session it is given, then finds them
// missing, or already there, on the next one (SQLSTATE 26000 or 42P05).
func (b *PgBouncer) DSN() string { return b.dsn }

// AdminDSN returns the URL of the pooler's admin console (the pseudo-database
// pgbouncer), where SHOW POOLS, SHOW SERVERS and the like run. The console
// speaks only the simple query protocol, which the URL selects for pgx.
func (b *PgBouncer) AdminDSN() string { return b.adminDSN }

// Port returns the loopback TCP port the pooler listens on.
func (b *PgBouncer) Port() int { return b.port }

// PoolMode returns the pooler's pool_mode.
func (b *PgBouncer) PoolMode() string { return b.mode }

// PoolSize returns the pooler's default_pool_size: the most server sessions
// it opens for the database.
func (b *PgBouncer) PoolSize() int { return b.poolSize }

// Version returns what the pooler's SHOW VERSION answered, such as
// "PgBouncer 1.18.0".
func (b *PgBouncer) Version() string { return b.version }

// Redact returns s with the pooler's password hidden, for logging a DSN or
// an error.
func (b *PgBouncer) Redact(s string) string { return redact(s, b.password) }

// PgBouncerPool is what the pooler's SHOW POOLS says about its database.
type PgBouncerPool struct {
	ClientsActive  int // cl_active: clients linked to a server session or idle
	ClientsWaiting int // cl_waiting: clients waiting for a server session
	ServersActive  int // sv_active: server sessions linked to a client
	ServersIdle    int // sv_idle: server sessions ready for a client
	ServersUsed    int // sv_used: server sessions idle, to be checked before reuse
}

// Pool reports the pooler's pool for its database, from the admin console.
// Before the first client has logged in there is none, and all counts are
// zero.
func (b *PgBouncer) Pool(ctx context.Context) (PgBouncerPool, error) {
	rows, err := b.show(ctx, "POOLS")
	if err != nil {
		return PgBouncerPool{}, err
	}
	var p PgBouncerPool
	for _, r := range rows {
		if r["database"] != b.database {
			continue
		}
		p.ClientsActive += showInt(r["cl_active"])
		p.ClientsWaiting += showInt(r["cl_waiting"])
		p.ServersActive += showInt(r["sv_active"])
		p.ServersIdle += showInt(r["sv_idle"])
		p.ServersUsed += showInt(r["sv_used"])
	}
	return p, nil
}

// ServerPIDs returns the process IDs of the server sessions the pooler has
// open for its database (SHOW SERVERS), in no particular order.
func (b *PgBouncer) ServerPIDs(ctx context.Context) ([]int32, error) {
	rows, err := b.show(ctx, "SERVERS")
	if err != nil {
		return nil, err
	}
	var pids []int32
	for _, r := range rows {
		if r["database"] == b.database {
			pids = append(pids, int32(showInt(r["remote_pid"])))
		}
	}
	return pids, nil
}

// show runs SHOW what on the admin console.
func (b *PgBouncer) show(ctx context.Context, what string) ([]map[string]any, error) {
	conn, err := pgx.Connect(ctx, b.adminDSN)
	if err != nil {
		return nil, redactError(err, b.password)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, _ := conn.Query(ctx, "SHOW "+what)
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	return maps, redactError(err, b.password)
}

// showInt reads a number of the admin console, which versions of PgBouncer
// type differently.
func showInt(v any) int {
	switch n := v.(type) {
	case int16:
		return int(n)
	case int32:
		return int(n)
	case int64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}

// Stop shuts the pooler down, closing every client and server connection it
// has, waits for it to exit and removes its temporary directory. It is
// idempotent: later calls return what the first returned.
func (b *PgBouncer) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return b.stopErr
	}
	b.stopped = true
	var errs []error
	if b.proc != nil {
		errs = append(errs, stopBouncer(b.proc))
		b.proc = nil
	}
	errs = append(errs, os.RemoveAll(b.dir))
	b.stopErr = errors.Join(errs...)
	return b.stopErr
}

// PgBouncer starts pgbouncer in transaction pooling mode, with a pool of 2
// server sessions, in front of the database of dsn on s, and returns the DSN
// to connect through it. See StartPgBouncer.
func (s *Server) PgBouncer(t testing.TB, dsn string) string {
	t.Helper()
	return s.StartPgBouncer(t, dsn, PgBouncerConfig{}).DSN()
}

// StartPgBouncer starts pgbouncer, configured by cfg, in front of the
// database of dsn, which must be a database of s (such as CreateDatabase
// returns), and returns once the pooler accepts logins. A cleanup registered
// on t stops it (see PgBouncer.Stop) and, if t failed, logs the end of its
// log.
//
// The pooler listens on 127.0.0.1 on a free port and authenticates clients
// with SCRAM against the DSN's user and password, which it also uses to log
// in to the server. As root it runs as the postgres OS user, since it refuses
// to run as root. Like a local server, it cannot outlive the test binary.
//
// When no pgbouncer binary is found, t is skipped, or failed if Required
// reports true. Any other failure fails t, with the password hidden.
func (s *Server) StartPgBouncer(t testing.TB, dsn string, cfg PgBouncerConfig) *PgBouncer {
	t.Helper()
	bin := RequirePgBouncer(t)
	ctx, cancel := context.WithTimeout(context.Background(), bouncerStartTimeout)
	defer cancel()
	b, err := startPgBouncer(ctx, bin, dsn, cfg)
	if err != nil {
		t.Fatalf("pgtest: start pgbouncer: %v", redactError(err, s.password))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: end of the pgbouncer log:\n%s", b.Redact(b.logTail()))
		}
		if err := b.Stop(); err != nil {
			t.Errorf("pgtest: stop pgbouncer: %v", b.Redact(err.Error()))
		}
	})
	return b
}

// RequirePgBouncer returns the path of the pgbouncer binary. When there is
// none it skips t, saying how to install it, or fails t if Required reports
// true.
func RequirePgBouncer(t testing.TB) string {
	t.Helper()
	bin, err := findPgBouncer()
	switch {
	case err == nil:
		return bin
	case Required():
		t.Fatalf("%v (a run with CI=true or %s=1 must not skip the pooler tests)", err, envRequireDB)
	default:
		t.Skip(err)
	}
	return ""
}

// findPgBouncer looks for pgbouncer on PATH, then in pgbouncerPlaces.
func findPgBouncer() (string, error) {
	if bin, err := exec.LookPath("pgbouncer"); err == nil {
		return bin, nil
	}
	for _, p := range pgbouncerPlaces {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errNoPgBouncer
}

// bouncerTarget is where a pooler sends its server connections.
type bouncerTarget struct {
	host, user, password, database string
	port                           uint16
}

// plainName matches database and user names the pooler's files take as they
// are.
var plainName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// parseTarget reads the server address, user, password and database of dsn.
func parseTarget(dsn string) (bouncerTarget, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN, and does not always mask the
		// password in it (keyword/value form).
		return bouncerTarget{}, errors.New("the DSN does not parse (pgx's message is withheld: it may show the password)")
	}
	t := bouncerTarget{host: cfg.Host, port: cfg.Port, user: cfg.User, password: cfg.Password, database: cfg.Database}
	if t.database == "" {
		t.database = t.user
	}
	for _, name := range []string{t.database, t.user} {
		if !plainName.MatchString(name) {
			return bouncerTarget{}, fmt.Errorf("database or user name %q: only letters, digits, _ . - are supported", name)
		}
	}
	return t, nil
}

// startPgBouncer writes the pooler's files into a new pgtest-* temporary
// directory and starts it on a free port, trying another port when the one
// chosen is taken first.
func startPgBouncer(ctx context.Context, bin, dsn string, cfg PgBouncerConfig) (*PgBouncer, error) {
	target, err := parseTarget(dsn)
	if err != nil {
		return nil, err
	}
	mode := cfg.PoolMode
	switch mode {
	case "":
		mode = PoolTransaction
	case PoolTransaction, PoolSession, PoolStatement:
	default:
		return nil, fmt.Errorf("pool mode %q: want %q, %q or %q", mode, PoolTransaction, PoolSession, PoolStatement)
	}
	size := cfg.PoolSize
	if size <= 0 {
		size = defaultBouncerPoolSize
	}
	as, dir, err := serverDir()
	if err != nil {
		return nil, err
	}
	b := &PgBouncer{password: target.password, mode: mode, poolSize: size, database: target.database, dir: dir, as: as}
	if err := b.prepare(target); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	for range portAttempts {
		if b.port, err = bouncerPort(); err != nil {
			break
		}
		err = b.start(ctx, bin, target)
		if err == nil || !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return b, nil
}

func (b *PgBouncer) configPath() string { return filepath.Join(b.dir, "pgbouncer.ini") }
func (b *PgBouncer) authPath() string   { return filepath.Join(b.dir, "userlist.txt") }
func (b *PgBouncer) logPath() string    { return filepath.Join(b.dir, "pgbouncer.log") }

// prepare claims the directory for this process (so that sweepStaleDirs
// removes it if the binary dies) and writes the auth file.
func (b *PgBouncer) prepare(target bouncerTarget) error {
	if err := claimDir(b.dir); err != nil {
		return err
	}
	// The plain password lets the pooler answer the server's SCRAM challenge
	// itself, and check its clients' SCRAM logins.
	auth := quoteAuth(target.user) + " " + quoteAuth(target.password) + "\n"
	return os.WriteFile(b.authPath(), []byte(auth), 0o600)
}

// quoteAuth quotes s for pgbouncer's auth_file.
func quoteAuth(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteConnValue quotes s as a value of a libpq-style connection string, as
// pgbouncer's [databases] section reads them.
func quoteConnValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// config renders pgbouncer.ini for the current port.
func (b *PgBouncer) config(target bouncerTarget) string {
	authType := "scram-sha-256"
	if target.password == "" {
		// A server that lets the user in without a password (env kind).
		authType = "trust"
	}
	var c strings.Builder
	c.WriteString("[databases]\n")
	fmt.Fprintf(&c, "%s = host=%s port=%d dbname=%s\n", target.database,
		quoteConnValue(target.host), target.port, quoteConnValue(target.database))
	c.WriteString("\n[pgbouncer]\n")
	for _, kv := range [][2]string{
		{"listen_addr", loopback},
		{"listen_port", strconv.Itoa(b.port)},
		{"unix_socket_dir", ""}, // TCP only; no socket file in /tmp
		{"auth_type", authType},
		{"auth_file", b.authPath()},
		{"admin_users", target.user},
		{"pool_mode", b.mode},
		{"default_pool_size", strconv.Itoa(b.poolSize)},
		{"min_pool_size", "0"},
		{"reserve_pool_size", "0"},
		{"max_client_conn", "200"},
		// A server session that failed or was terminated is replaced at
		// once, not after the default 15 s.
		{"server_login_retry", "1"},
		{"log_stats", "0"},
	} {
		fmt.Fprintf(&c, "%s = %s\n", kv[0], kv[1])
	}
	return c.String()
}

// bouncerPort picks the port for a pooler to listen on; tests replace it.
var bouncerPort = freePort

// errPortTaken reports a pooler that could not bind its port.
var errPortTaken = errors.New("port taken")

// start writes the configuration for b.port, starts the pooler and waits
// until it accepts logins.
func (b *PgBouncer) start(ctx context.Context, bin string, target bouncerTarget) error {
	if err := os.WriteFile(b.configPath(), []byte(b.config(target)), 0o600); err != nil {
		return err
	}
	if err := b.as.give(b.dir); err != nil {
		return err
	}
	logf, err := os.OpenFile(b.logPath(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	// Not a CommandContext: the pooler outlives ctx, which only bounds the
	// start. It logs to stderr, into the log file.
	cmd := exec.Command(bin, b.configPath())
	cmd.Dir = b.dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = b.as.sysProcAttr()
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := startBouncerProcess(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	b.adminDSN = bouncerDSN(target.user, target.password, b.port, "pgbouncer", "simple_protocol")
	b.dsn = bouncerDSN(target.user, target.password, b.port, target.database, "exec")
	b.version, err = awaitBouncer(ctx, b.adminDSN, proc.done)
	if err != nil {
		err = errors.Join(err, stopBouncer(proc))
		tail := b.logTail()
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return fmt.Errorf("pgbouncer on port %d: %w; pgbouncer log:\n%s", b.port, err, tail)
	}
	b.mu.Lock()
	b.proc = proc
	b.mu.Unlock()
	return nil
}

// bouncerDSN is the URL of database db through a pooler on port, with pgx's
// default_query_exec_mode set to mode unless mode is "".
func bouncerDSN(user, password string, port int, db, mode string) string {
	q := url.Values{"sslmode": {"disable"}}
	if mode != "" {
		q.Set("default_query_exec_mode", mode)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort(loopback, strconv.Itoa(port)),
		Path:     "/" + db,
		RawQuery: q.Encode(),
	}
	if password == "" {
		u.User = url.User(user)
	}
	return u.String()
}

// awaitBouncer polls the admin console at adminDSN until a login and SHOW
// VERSION succeed, and returns the version. It gives up when exited is
// closed, after readyTimeout, or when ctx ends. It opens no server session.
func awaitBouncer(ctx context.Context, adminDSN string, exited <-chan struct{}) (string, error) {
	cfg, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	// A pooler that exits ends the attempt under way: something else may
	// have accepted the connection on the port it could not bind.
	attempts, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-exited:
			stop()
		case <-attempts.Done():
		}
	}()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		version, last := bouncerVersion(attempts, cfg)
		if last == nil {
			return version, nil
		}
		select {
		case <-exited:
			return "", errExited
		default:
		}
		select {
		case <-exited:
			return "", errExited
		case <-ctx.Done():
			return "", fmt.Errorf("pgbouncer not ready: %w (last attempt: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// bouncerVersion logs in to the admin console with cfg and asks SHOW VERSION.
func bouncerVersion(ctx context.Context, cfg *pgx.ConnConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var version string
	err = conn.QueryRow(ctx, "SHOW VERSION").Scan(&version)
	return version, err
}

// logTail returns the end of the pooler's log.
func (b *PgBouncer) logTail() string {
	f, err := os.Open(b.logPath())
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	return lastBytes(data)
}

// startBouncerProcess starts cmd in its own process group, with SIGKILL as
// its parent-death signal, and reaps it in the background. A pooler keeps no
// data, so killing it loses nothing; PgBouncer 1.18 does not handle the
// SIGQUIT servers get (it dies of the default action, which may dump core).
func startBouncerProcess(cmd *exec.Cmd) (*process, error) {
	return startProcess(cmd, syscall.SIGKILL)
}

// stopBouncer stops a pooler and returns once it has exited. SIGTERM is an
// immediate shutdown in PgBouncer 1.18 ("got SIGTERM, fast exit"); newer
// versions wait for clients to leave on the first one and exit at once on a
// second. SIGKILL is the last resort.
func stopBouncer(p *process) error {
	for range 2 {
		if p.signalAndWait(syscall.SIGTERM, bouncerStopWait) {
			return nil
		}
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return errKilled
}
