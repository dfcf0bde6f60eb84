package pgtest

import (
	"crypto/rand"
	"testing"
)

// A SecretDSN is a connection string whose password is made to be found in
// any text it leaks into: one that works, or one that fails as Name says.
type SecretDSN struct {
	Name string
	DSN  string
	OK   bool // it connects
}

// SecretDSNs returns, for dsn (a URL to a database of s), the connection
// strings a test of leaks runs through: one that works (SecretRole's role),
// one whose server refuses the connection, one whose role gets a wrong
// password and one whose own user (dsn's) does; and the secrets no text may
// show: the role's password, the wrong one and the server's own.
func (s *Server) SecretDSNs(t testing.TB, dsn string) ([]SecretDSN, []string) {
	t.Helper()
	role, password := s.SecretRole(t)
	wrong := "s3cr3t-Pa55-" + rand.Text()
	return []SecretDSN{
		{"works", WithCredentials(t, dsn, role, password, 0), true},
		{"connection refused", WithCredentials(t, dsn, role, password, ClosedPort(t)), false},
		{"wrong password for the role", WithCredentials(t, dsn, role, wrong, 0), false},
		{"wrong password for the test's own user", WithCredentials(t, dsn, "", wrong, 0), false},
	}, []string{password, wrong, s.Password()}
}
