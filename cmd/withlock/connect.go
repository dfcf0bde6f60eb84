package main

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvConnectionString names the environment variable with the connection
// string, used when --db is not given (the npm package's withlock reads it).
const EnvConnectionString = "PG_CONNECTION_STRING"

const (
	// maxConns: one connection holds the lock, one is left for Holders.
	maxConns = 2
	// defaultConnectTimeout bounds each connection attempt when neither the
	// connection string (connect_timeout) nor PGCONNECT_TIMEOUT does: without
	// it an unanswering host would hang for the operating system's TCP
	// timeout.
	defaultConnectTimeout = 30 * time.Second
	// applicationName is the session's application_name unless the user sets
	// one (in the connection string or PGAPPNAME); --status shows it.
	applicationName = "withlock"
)

// connSource says where the connection settings come from, for messages.
type connSource struct {
	conn string // the connection string; "" for the libpq environment alone
	from string // "--db", "PG_CONNECTION_STRING" or "the libpq environment"
}

// chooseSource applies the precedence: --db, else PG_CONNECTION_STRING, else
// the libpq environment, which pgx reads itself (as defaults for whatever a
// connection string leaves out, too, as libpq does).
func chooseSource(o options, getenv func(string) string) connSource {
	switch {
	case o.hasDB:
		return connSource{conn: o.db, from: "--db"}
	case getenv(EnvConnectionString) != "":
		return connSource{conn: getenv(EnvConnectionString), from: EnvConnectionString}
	default:
		return connSource{from: "the libpq environment"}
	}
}

// poolConfig parses the connection settings into a small pool's config.
// Its error is already redacted and meant for the user.
func poolConfig(src connSource, red *redactor) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(src.conn)
	if err != nil {
		return nil, errors.New(red.clean(describeParseError(err, src.from)))
	}
	red.add(cfg.ConnConfig.Password) // also from PGPASSWORD or a passfile
	cfg.MaxConns = maxConns
	cfg.MinConns = 0
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	return cfg, nil
}

// describeParseError explains a connection string that cannot be parsed
// without quoting it: pgx redacts the password in what it quotes only on a
// best-effort basis, and the URL parser's error quotes the whole URL.
func describeParseError(err error, from string) string {
	detail := err.Error()
	var ue *url.Error
	var pe *pgconn.ParseConfigError
	switch {
	case errors.As(err, &ue):
		detail = ue.Err.Error()
	case errors.As(err, &pe):
		// "cannot parse `<string>`: <what> (<cause>)": keep what follows.
		if i := strings.LastIndex(detail, "`: "); i >= 0 {
			detail = detail[i+3:]
		} else {
			detail = "malformed"
		}
	}
	return fmt.Sprintf("cannot parse the connection string from %s: %s", from, detail)
}

// A redactor hides secrets from messages: the password in force and every
// password-looking part of the connection strings withlock was given. Each
// message withlock prints passes through it.
type redactor struct {
	secrets []string // longest first, so that a secret inside another goes too
}

// redactedMark replaces a secret.
const redactedMark = "xxxxx"

// newRedactor returns a redactor for the connection settings withlock may
// use: the chosen source, PG_CONNECTION_STRING and PGPASSWORD.
func newRedactor(src connSource, getenv func(string) string) *redactor {
	r := &redactor{}
	for _, s := range []string{src.conn, getenv(EnvConnectionString)} {
		r.addConnString(s)
	}
	r.add(getenv("PGPASSWORD"))
	return r
}

// add registers a secret.
func (r *redactor) add(secret string) {
	if secret == "" || slices.Contains(r.secrets, secret) {
		return
	}
	r.secrets = append(r.secrets, secret)
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
}

var (
	// urlUserinfo finds the userinfo of a postgres:// URL, even a malformed
	// one: what comes before the last '@' of the authority.
	urlUserinfo = regexp.MustCompile(`^postgres(?:ql)?://([^/?#]*)@`)
	// kvPassword finds password and sslpassword settings, quoted or not, in
	// the keyword/value form and in URL query strings.
	kvPassword = regexp.MustCompile(`(?i)(?:ssl)?pass(?:word|%77ord)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]*)`)
)

// addConnString registers the secrets of a connection string: the whole
// string (it is never printed), the URL's password, raw and decoded, and
// every password= value.
func (r *redactor) addConnString(s string) {
	if s == "" {
		return
	}
	r.add(s)
	if m := urlUserinfo.FindStringSubmatch(s); m != nil {
		if _, pw, ok := strings.Cut(m[1], ":"); ok {
			r.add(pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				r.add(dec)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(s, -1) {
		v := m[1]
		r.add(v)
		if strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") && len(v) >= 2 {
			r.add(strings.ReplaceAll(v[1:len(v)-1], `\'`, `'`))
		}
		if dec, err := url.QueryUnescape(v); err == nil {
			r.add(dec)
		}
	}
}

// clean returns s with every secret replaced.
func (r *redactor) clean(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, redactedMark)
	}
	return s
}
