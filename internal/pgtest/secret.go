package pgtest

import (
	"crypto/rand"
	"strings"
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
