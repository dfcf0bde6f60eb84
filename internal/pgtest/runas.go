package pgtest

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUserName is the OS user that runs the server when the tests run as
// root; Debian's packages create it.
const serverUserName = "postgres"

// runAs is the OS identity the server's programs run under.
type runAs struct {
	cred *syscall.Credential // nil: run as this process's user
}

// serverIdentity decides who runs initdb and postgres. Both refuse to run as
// root, so as root they run as the postgres user; otherwise as ourselves.
func serverIdentity() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{}, nil
	}
	u, err := user.Lookup(serverUserName)
	if err != nil {
		return runAs{}, fmt.Errorf("running as root, initdb and postgres need the %q OS user: %w", serverUserName, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("user %s: uid %q: %w", serverUserName, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("user %s: gid %q: %w", serverUserName, u.Gid, err)
	}
	// An empty Groups drops root's supplementary groups.
	return runAs{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}, nil
}

// sysProcAttr returns the attributes to start a program as this identity.
func (r runAs) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: r.cred}
}

// give hands path, and everything beneath it, to this identity.
func (r runAs) give(path string) error {
	if r.cred == nil {
		return nil
	}
	uid, gid := int(r.cred.Uid), int(r.cred.Gid)
	return filepath.WalkDir(path, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
