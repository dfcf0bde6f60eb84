package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	// dirPattern names the temporary directories of local servers.
	dirPattern = "pgtest-*"
	// ownerFile, in such a directory, holds the PID of the test binary that
	// made it.
	ownerFile = "owner.pid"
)

// claimDir records this process as the owner of a server directory.
func claimDir(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// sweepStaleDirs removes the server directories of test binaries that are
// gone. A binary that ends without stopping its server (os.Exit or log.Fatal
// in a test, a panic, a timeout, SIGKILL) takes the server with it (see
// process.go) but cannot remove the directory. Directories without an owner
// file, or whose owner lives or cannot be checked, are left alone.
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPattern)) // the pattern is valid
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}
