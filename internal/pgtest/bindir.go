package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// envPGBin names the environment variable pointing at a directory with the
// PostgreSQL server binaries (initdb, postgres, pg_basebackup). When set, no
// other place is searched.
const envPGBin = "ADVISORYLOCK_TEST_PGBIN"

// debianBinGlob matches the server binary directories of Debian's packages,
// one per major version.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// findBinDir returns the directory holding initdb and postgres: the one in
// ADVISORYLOCK_TEST_PGBIN, else the newest Debian one, else pg_config's
// bindir, else the one on PATH.
func findBinDir(ctx context.Context) (string, error) {
	if dir := os.Getenv(envPGBin); dir != "" {
		if !hasServerBinaries(dir) {
			return "", fmt.Errorf("%s=%s holds no initdb and postgres", envPGBin, dir)
		}
		return dir, nil
	}
	if dir := newestDebianBinDir(); dir != "" {
		return dir, nil
	}
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(initdb); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", errors.New("no initdb and postgres found in " + debianBinGlob + ", pg_config --bindir or PATH")
}

// newestDebianBinDir returns the debianBinGlob directory of the highest
// version that holds the server binaries, or "".
func newestDebianBinDir() string {
	dirs, _ := filepath.Glob(debianBinGlob) // the pattern is valid
	best, bestVersion := "", []int(nil)
	for _, dir := range dirs {
		if !hasServerBinaries(dir) {
			continue
		}
		v := parseVersion(filepath.Base(filepath.Dir(dir)))
		if best == "" || compareVersions(v, bestVersion) > 0 {
			best, bestVersion = dir, v
		}
	}
	return best
}

// parseVersion splits a version such as "15" or "9.6" into its numbers; a
// part that is not a number counts as -1.
func parseVersion(s string) []int {
	parts := strings.Split(s, ".")
	v := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			n = -1
		}
		v[i] = n
	}
	return v
}

// compareVersions orders versions by their numbers, left to right.
func compareVersions(a, b []int) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return len(a) - len(b)
}

// hasServerBinaries reports whether dir holds executable initdb and postgres.
func hasServerBinaries(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
