package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// startStandby clones l with pg_basebackup and starts the clone as a hot
// standby streaming from l.
func (l *localServer) startStandby(ctx context.Context) (*Server, error) {
	l.mu.Lock()
	stopped := l.stopped
	l.mu.Unlock()
	if stopped {
		return nil, errStopped
	}
	sb, err := newLocalServer(l.bin, l.password)
	if err != nil {
		return nil, err
	}
	if err := sb.baseBackup(ctx, l.port); err != nil {
		return nil, errors.Join(err, sb.removeDir())
	}
	if err := sb.startOnFreePort(ctx); err != nil {
		return nil, errors.Join(err, sb.removeDir())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil, errors.Join(errStopped, sb.stop())
	}
	l.standbys = append(l.standbys, sb)
	sb.primary = l
	return sb.server(), nil
}

// promote makes the standby l a primary, and detaches it from the server it
// followed.
func (l *localServer) promote(ctx context.Context) error {
	l.mu.Lock()
	primary, stopped := l.primary, l.stopped
	l.mu.Unlock()
	if stopped {
		return errStopped
	}
	if primary == nil {
		return errors.New("pgtest: promote: not a standby")
	}
	cfg, err := pgx.ParseConfig(l.dsn())
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return redactError(fmt.Errorf("promote: %w", err), l.password)
	}
	defer conn.Close(context.Background())
	var promoted bool
	if err := conn.QueryRow(ctx, "select pg_catalog.pg_promote(true, $1)", int(promoteWait/time.Second)).Scan(&promoted); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if !promoted {
		return fmt.Errorf("promote: not promoted within %v", promoteWait)
	}
	primary.mu.Lock()
	primary.standbys = slices.DeleteFunc(primary.standbys, func(s *localServer) bool { return s == l })
	primary.mu.Unlock()
	l.mu.Lock()
	l.primary = nil
	l.mu.Unlock()
	return nil
}

// promoteWait bounds the wait for a promotion to complete.
const promoteWait = time.Minute

// baseBackup copies the server on primaryPort into l's data directory and,
// with -R, configures it to follow that server. The password goes through
// the environment, never the command line.
func (l *localServer) baseBackup(ctx context.Context, primaryPort int) error {
	conninfo := "host=" + loopback + " port=" + strconv.Itoa(primaryPort) +
		" user=" + superuser + " sslmode=disable gssencmode=disable"
	var out bytes.Buffer
	cmd := l.command(ctx, "pg_basebackup",
		"-D", l.dataDir(), "-d", conninfo, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w")
	cmd.Env = append(cmd.Env, "PGPASSWORD="+l.password)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runChild(cmd); err != nil {
		return fmt.Errorf("pg_basebackup: %w: %s", err, redact(lastBytes(out.Bytes()), l.password))
	}
	return nil
}
