package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
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
	return sb.server(), nil
}

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
