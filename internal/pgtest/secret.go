package pgtest

import (
	"context"
	"crypto/rand"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// newPassword returns a random password made of URL-safe characters, so it
// can stand in a DSN without escaping.
func newPassword() string {
	return rand.Text()
}

// redact replaces every occurrence of secret in s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}

// redactedError hides a secret from an error's text while keeping the error
// chain intact for errors.Is and errors.As.
type redactedError struct {
	err    error
	secret string
}

// redactError wraps err so that its text never shows secret.
func redactError(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	return &redactedError{err: err, secret: secret}
}

func (e *redactedError) Error() string { return redact(e.err.Error(), e.secret) }

func (e *redactedError) Unwrap() error { return e.err }

// SecretRole creates a login role on the server with a random name and the
// password "s3cr3t-Pa55-<random>", made to be found in any text it leaks
// into, and drops it when the test ends (register it before the pools that
// use it, so that it is dropped after them).
func (s *Server) SecretRole(t testing.TB) (name, password string) {
	t.Helper()
	name = "secrets_" + strings.ToLower(rand.Text()[:10])
	password = "s3cr3t-Pa55-" + rand.Text()
	role := pgx.Identifier{name}.Sanitize()
	superuser := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.exec(ctx, sql)
	}
	// The password is made of [A-Za-z0-9-]: safe in a literal.
	if err := superuser("create role " + role + " login password '" + password + "'"); err != nil {
		t.Fatalf("creating role %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := superuser("drop role if exists " + role); err != nil {
			t.Errorf("dropping role %s: %v", name, err)
		}
	})
	return name, password
}

// WithCredentials returns dsn (a URL) with its password replaced, its user
// too unless user is "", and, when port is not 0, its port (with a 5s
// connect_timeout, for ports where nothing may answer).
func WithCredentials(t testing.TB, dsn, user, password string, port int) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal("the test DSN is not a URL") // not err: its text could hold the password
	}
	if user == "" {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	if port != 0 {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
		q := u.Query()
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// ClosedPort returns a loopback port nothing listens on: one that was free a
// moment ago, for a connection that must be refused.
func ClosedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ErrorChain returns err and every error it wraps, depth first, through
// Unwrap() error and Unwrap() []error: a caller may log any of them.
func ErrorChain(err error) []error {
	var chain []error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		chain = append(chain, e)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		}
	}
	walk(err)
	return chain
}

// AssertNoSecrets fails t for every text that contains one of secrets (empty
// ones are ignored), showing the text, shortened and with the secret
// redacted. With no texts at all it fails t at once: the check would prove
// nothing.
func AssertNoSecrets(t testing.TB, texts []string, secrets ...string) {
	t.Helper()
	if len(texts) == 0 {
		t.Fatal("no text to search for secrets: the test proves nothing")
	}
	for _, text := range texts {
		for _, s := range secrets {
			if s == "" || !strings.Contains(text, s) {
				continue
			}
			shown := redact(text, s)
			if len(shown) > 600 {
				shown = shown[:600] + "…"
			}
			t.Errorf("a secret shows in %s", shown)
		}
	}
}

// A SecretDSN is a connection string that holds a password, and whether a
// connection with it works.
type SecretDSN struct {
	Name string // what it is, such as "connection refused"
	DSN  string
	OK   bool
}

// SecretDSNs creates a SecretRole and returns URLs of dsn's database that
// hold a password: the role's, which works; the role's on a port nothing
// listens on (refused); a wrong one for the role, and a wrong one for dsn's
// own user (both denied, 28P01). It returns them with the passwords no text
// may show: the role's, the wrong one and s's own.
func (s *Server) SecretDSNs(t testing.TB, dsn string) (dsns []SecretDSN, secrets []string) {
	t.Helper()
	role, password := s.SecretRole(t)
	wrong := "s3cr3t-Pa55-" + rand.Text()
	return []SecretDSN{
		{"works", WithCredentials(t, dsn, role, password, 0), true},
		{"connection refused", WithCredentials(t, dsn, role, password, ClosedPort(t)), false},
		{"wrong password for the role", WithCredentials(t, dsn, role, wrong, 0), false},
		{"wrong password for the test's own user", WithCredentials(t, dsn, "", wrong, 0), false},
	}, []string{password, wrong, s.password}
}
