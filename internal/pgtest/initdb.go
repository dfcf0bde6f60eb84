package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// initdb creates the cluster: the superuser gets the random password, local
// (Unix socket) connections are trusted, TCP ones need SCRAM, and replication
// from loopback is allowed so that standbys can be made.
func (l *localServer) initdb(ctx context.Context) error {
	pwfile := filepath.Join(l.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(l.password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := l.as.give(pwfile); err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := l.command(ctx, "initdb",
		"-D", l.dataDir(), "--no-sync", "-U", superuser, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runChild(cmd); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, redact(lastBytes(out.Bytes()), l.password))
	}
	hba, err := os.OpenFile(filepath.Join(l.dataDir(), "pg_hba.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = io.WriteString(hba, "\n# pgtest: streaming replication for standbys\n"+
		"host replication all "+loopback+"/32 scram-sha-256\n")
	return errors.Join(err, hba.Close())
}

// command prepares a program from the binary directory to run as the
// server's identity, in the server's directory (the caller's working
// directory may be closed to that identity), without the caller's libpq
// environment.
func (l *localServer) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(l.bin, name), args...)
	cmd.Dir = l.dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = l.as.sysProcAttr()
	return cmd
}

// childEnv is this process's environment without libpq's PG* variables.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
