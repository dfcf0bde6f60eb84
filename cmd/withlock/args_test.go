package main

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
)

func TestParseArgs(t *testing.T) {
	def := func(f func(o *options)) options {
		o := options{conflict: 1, grace: 10 * time.Second, keepalive: advisorylock.DefaultKeepalive}
		f(&o)
		return o
	}
	tests := []struct {
		name string
		args []string
		want options
	}{
		{"seed form", []string{"dbmigration", "--", "npm", "run", "knex", "migrate:latest"}, def(func(o *options) {
			o.name, o.command = "dbmigration", []string{"npm", "run", "knex", "migrate:latest"}
		})},
		{"command keeps its dashes", []string{"x", "--", "ls", "-l", "--", "-n"}, def(func(o *options) {
			o.name, o.command = "x", []string{"ls", "-l", "--", "-n"}
		})},
		{"short flags", []string{"-n", "-s", "-v", "-E", "3", "x", "--", "true"}, def(func(o *options) {
			o.nonblock, o.shared, o.verbose, o.conflict = true, true, true, 3
			o.name, o.command = "x", []string{"true"}
		})},
		{"clustered flags with attached value", []string{"-nsvE7", "x", "--", "true"}, def(func(o *options) {
			o.nonblock, o.shared, o.verbose, o.conflict = true, true, true, 7
			o.name, o.command = "x", []string{"true"}
		})},
		{"long flags", []string{"--nonblock", "--shared", "--verbose", "--conflict-exit-code", "0", "x", "--", "true"}, def(func(o *options) {
			o.nonblock, o.shared, o.verbose, o.conflict = true, true, true, 0
			o.name, o.command = "x", []string{"true"}
		})},
		{"flock seconds", []string{"-w", "1.5", "x", "--", "true"}, def(func(o *options) {
			o.timeout, o.hasTimeout = 1500*time.Millisecond, true
			o.name, o.command = "x", []string{"true"}
		})},
		{"attached timeout", []string{"-w5", "x", "--", "true"}, def(func(o *options) {
			o.timeout, o.hasTimeout = 5*time.Second, true
			o.name, o.command = "x", []string{"true"}
		})},
		{"go duration with =", []string{"--timeout=250ms", "x", "--", "true"}, def(func(o *options) {
			o.timeout, o.hasTimeout = 250*time.Millisecond, true
			o.name, o.command = "x", []string{"true"}
		})},
		{"flock's --wait", []string{"--wait", "2", "x", "--", "true"}, def(func(o *options) {
			o.timeout, o.hasTimeout = 2*time.Second, true
			o.name, o.command = "x", []string{"true"}
		})},
		{"zero timeout is nonblock", []string{"-w", "0", "x", "--", "true"}, def(func(o *options) {
			o.hasTimeout, o.nonblock = true, true
			o.name, o.command = "x", []string{"true"}
		})},
		{"exclusive after shared", []string{"-s", "-e", "x", "--", "true"}, def(func(o *options) {
			o.name, o.command = "x", []string{"true"}
		})},
		{"bigint key", []string{"--key", "-42", "--", "true"}, def(func(o *options) {
			o.key, o.hasKey, o.command = advisorylock.Int64Key(-42), true, []string{"true"}
		})},
		{"pair key", []string{"--key=(1, -2)", "--", "true"}, def(func(o *options) {
			o.key, o.hasKey, o.command = advisorylock.PairKey(1, -2), true, []string{"true"}
		})},
		{"db", []string{"--db", "postgres://h/d", "x", "--", "true"}, def(func(o *options) {
			o.db, o.hasDB, o.name, o.command = "postgres://h/d", true, "x", []string{"true"}
		})},
		{"empty db", []string{"--db=", "x", "--", "true"}, def(func(o *options) {
			o.hasDB, o.name, o.command = true, "x", []string{"true"}
		})},
		{"grace and keepalive", []string{"--grace", "1", "--keepalive=0", "x", "--", "true"}, def(func(o *options) {
			o.grace, o.keepalive, o.name, o.command = time.Second, 0, "x", []string{"true"}
		})},
		{"fencing", []string{"x", "--fencing", "--", "sh", "-c", "echo $WITHLOCK_TOKEN"}, def(func(o *options) {
			o.fencing, o.name, o.command = true, "x", []string{"sh", "-c", "echo $WITHLOCK_TOKEN"}
		})},
		{"status", []string{"--status", "x"}, def(func(o *options) { o.status, o.name = true, "x" })},
		{"status of a key", []string{"--status", "--key", "7"}, def(func(o *options) {
			o.status, o.key, o.hasKey = true, advisorylock.Int64Key(7), true
		})},
		{"help stops parsing", []string{"-h", "--bogus"}, def(func(o *options) { o.help = true })},
		{"help in a cluster", []string{"-vh"}, def(func(o *options) { o.verbose, o.help = true, true })},
		{"dash is a name", []string{"-", "--", "true"}, def(func(o *options) { o.name, o.command = "-", []string{"true"} })},
		// Options after the lock name, up to "--": the documented form
		// withlock <lock-name> [--db URL] -- <command>.
		{"db after the name", []string{"mylock", "--db", "postgres://h/d", "--", "cmd"}, def(func(o *options) {
			o.db, o.hasDB, o.name, o.command = "postgres://h/d", true, "mylock", []string{"cmd"}
		})},
		{"db= after the name", []string{"mylock", "--db=postgres://h/d", "--", "cmd"}, def(func(o *options) {
			o.db, o.hasDB, o.name, o.command = "postgres://h/d", true, "mylock", []string{"cmd"}
		})},
		{"options on both sides", []string{"-n", "x", "-sv", "-w", "2", "--db", "-", "--", "cmd", "-n"}, def(func(o *options) {
			o.nonblock, o.shared, o.verbose, o.timeout, o.hasTimeout = true, true, true, 2*time.Second, true
			o.db, o.hasDB, o.name, o.command = "-", true, "x", []string{"cmd", "-n"}
		})},
		{"option after dash name", []string{"-", "-E", "5", "--", "true"}, def(func(o *options) {
			o.conflict, o.name, o.command = 5, "-", []string{"true"}
		})},
		{"key after the name position", []string{"-v", "--key", "1,2", "--", "true"}, def(func(o *options) {
			o.verbose, o.key, o.hasKey, o.command = true, advisorylock.PairKey(1, 2), true, []string{"true"}
		})},
		{"status, then name, then db", []string{"--status", "x", "--db", "postgres://h/d"}, def(func(o *options) {
			o.status, o.name, o.db, o.hasDB = true, "x", "postgres://h/d", true
		})},
		{"status after the name", []string{"x", "--status"}, def(func(o *options) { o.status, o.name = true, "x" })},
		{"help after the name", []string{"x", "--help", "--bogus"}, def(func(o *options) { o.name, o.help = "x", true })},
		{"slots", []string{"--slots", "3", "api", "--", "true"}, def(func(o *options) {
			o.slots, o.name, o.command = 3, "api", []string{"true"}
		})},
		{"slots= after the name, with -n and -w", []string{"api", "--slots=1000", "-n", "-w", "2", "--", "true"}, def(func(o *options) {
			o.slots, o.nonblock, o.timeout, o.hasTimeout, o.name, o.command = 1000, true, 2*time.Second, true, "api", []string{"true"}
		})},
		{"status of a semaphore", []string{"--status", "--slots", "2", "api"}, def(func(o *options) { o.status, o.slots, o.name = true, 2, "api" })},
		{"every", []string{"--every", "30m", "slack-stats", "--", "./post"}, def(func(o *options) {
			o.every, o.name, o.command = 30*time.Minute, "slack-stats", []string{"./post"}
		})},
		{"every in seconds, after the name, with a schema", []string{"x", "--every=90", "--schema", "Jobs", "-v", "--", "true"}, def(func(o *options) {
			o.every, o.schema, o.hasSchema, o.verbose, o.name, o.command = 90*time.Second, "Jobs", true, true, "x", []string{"true"}
		})},
		{"every with -n and -w", []string{"-n", "-w", "5", "--every", "1h", "x", "--", "true"}, def(func(o *options) {
			o.every, o.nonblock, o.timeout, o.hasTimeout, o.name, o.command = time.Hour, true, 5*time.Second, true, "x", []string{"true"}
		})},
		{"status with every and schema", []string{"--status", "--every", "1h", "--schema=s", "x"}, def(func(o *options) {
			o.status, o.every, o.schema, o.hasSchema, o.name = true, time.Hour, "s", true, "x"
		})},
		{"options after -- are the command's", []string{"x", "--", "withlock", "y", "--db", "z", "--", "-h"}, def(func(o *options) {
			o.name, o.command = "x", []string{"withlock", "y", "--db", "z", "--", "-h"}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseArgs(tt.args)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseArgs(%q) = %+v; want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseArgs_usageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the message
	}{
		{"nothing", nil, "missing lock name"},
		{"no --", []string{"x"}, `missing "--"`},
		{"command without --", []string{"x", "true"}, `missing "--" before the command "true"`},
		{"no command", []string{"x", "--"}, "missing command"},
		{"only --", []string{"--", "true"}, "missing lock name"},
		{"empty name", []string{"", "--", "true"}, "empty lock name"},
		{"two names", []string{"x", "y", "--", "true"}, `two lock names, "x" and "y"`},
		{"two names around an option", []string{"x", "-n", "y", "--", "true"}, `two lock names, "x" and "y"`},
		{"command without -- after an option", []string{"x", "-n", "ls", "-l"}, `missing "--" before the command "ls"`},
		{"unknown option after the name", []string{"x", "--quiet", "--", "true"}, "unknown option --quiet"},
		{"missing value before --", []string{"x", "--db", "--", "true"}, "option --db needs a value"},
		{"missing short value before --", []string{"x", "-w", "--", "true"}, "option -w needs a value"},
		{"status with a second name", []string{"--status", "x", "y"}, "takes no command"},
		{"status with --", []string{"x", "--status", "--"}, "takes no command"},
		{"unknown short", []string{"-q", "x", "--", "true"}, "unknown option -q"},
		{"unknown long", []string{"--quiet", "x", "--", "true"}, "unknown option --quiet"},
		{"missing value", []string{"-w"}, "needs a value"},
		{"missing long value", []string{"--timeout"}, "needs a value"},
		{"value on a switch", []string{"--nonblock=1", "x", "--", "true"}, "takes no value"},
		{"negative timeout", []string{"-w", "-1", "x", "--", "true"}, "negative"},
		{"negative go timeout", []string{"-w", "-1s", "x", "--", "true"}, "negative"},
		{"bad timeout", []string{"-w", "soon", "x", "--", "true"}, "invalid duration"},
		{"bad conflict code", []string{"-E", "256", "x", "--", "true"}, "0 to 255"},
		{"negative conflict code", []string{"-E", "-1", "x", "--", "true"}, "0 to 255"},
		{"bad key", []string{"--key", "1,2,3", "--", "true"}, "invalid key"},
		{"pair out of int4", []string{"--key", "1,2147483648", "--", "true"}, "invalid key"},
		{"name and key", []string{"--key", "1", "x", "--", "true"}, "not both"},
		{"status with command", []string{"--status", "x", "--", "true"}, "takes no command"},
		{"bad grace", []string{"--grace", "-2", "x", "--", "true"}, "negative"},
		{"no slots", []string{"--slots", "0", "x", "--", "true"}, "--slots: \"0\" is not a number from 1 to 1000"},
		{"too many slots", []string{"--slots", "1001", "x", "--", "true"}, "from 1 to 1000"},
		{"slots not a number", []string{"--slots=three", "x", "--", "true"}, "\"three\" is not a number"},
		{"slots with a key", []string{"--slots", "2", "--key", "7", "--", "true"}, "--slots takes a lock name, not --key"},
		{"shared slots", []string{"--slots", "2", "-s", "x", "--", "true"}, "a slot is exclusive"},
		{"slots every", []string{"--slots", "2", "--every", "1h", "x", "--", "true"}, "--slots and --every"},
		{"slots fenced", []string{"--slots", "2", "--fencing", "x", "--", "true"}, "--slots and --fencing"},
		{"zero period", []string{"--every", "0", "x", "--", "true"}, "--every: the period must be positive"},
		{"negative period", []string{"--every", "-1m", "x", "--", "true"}, "--every: negative"},
		{"bad period", []string{"--every", "hourly", "x", "--", "true"}, "--every: invalid duration"},
		{"missing period", []string{"x", "--every", "--", "true"}, "option --every needs a value"},
		{"every with a key", []string{"--every", "1h", "--key", "1", "--", "true"}, "--every needs a lock name"},
		{"every shared", []string{"--every", "1h", "-s", "x", "--", "true"}, "--every takes the lock exclusively"},
		{"schema alone", []string{"--schema", "s", "x", "--", "true"}, "--schema goes with --every or --status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseArgs(tt.args)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseArgs(%q) error = %v; want a usage error", tt.args, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseArgs(%q) error = %q; want it to contain %q", tt.args, err, tt.want)
			}
		})
	}
}

// TestParseArgs_secretsNotEchoed checks that no usage error quotes a --db
// value: it may hold a password.
func TestParseArgs_secretsNotEchoed(t *testing.T) {
	const secret = "postgres://u:hunter2@h/d"
	for _, args := range [][]string{
		{"--db", secret},
		{"--db", secret, "x"},
		{"--db=" + secret, "-q"},
		{"x", "--db=" + secret, "-q", "--", "true"},
		{"x", "--db", secret, "-w", "soon", "--", "true"},
		{"x", "--db", secret},
		{"x", "--db", secret, "y", "--", "true"},
		{"--db", secret, "--key", "1", "x", "--", "true"},
		{"--db"},
		// A connection string typed where a name or a command goes.
		{"x", secret, "--", "true"},
		{"x", secret},
		{secret, "y", "--", "true"},
		{"x", "host=h user=u password=hunter2", "--", "true"},
		{"x", "-w", secret, "--", "true"},
	} {
		_, err := parseArgs(args)
		if err == nil {
			t.Fatalf("parseArgs(%q) = nil error; want one", args)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseArgs(%q) error = %q; it shows the password", args, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"5", 5 * time.Second, true},
		{"1.5", 1500 * time.Millisecond, true},
		{".25", 250 * time.Millisecond, true},
		{"2.", 2 * time.Second, true},
		{"0.000000001", time.Nanosecond, true},
		{"500ms", 500 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"+2s", 2 * time.Second, true},
		{"-0s", 0, true},
		{"", 0, false},
		{".", 0, false},
		{"1.2.3", 0, false},
		{"-1", 0, false},
		{"-1.5", 0, false},
		{"+1.5", 1500 * time.Millisecond, true},
		{"+-1", 0, false},
		{"-0", 0, true},
		{"-5ms", 0, false},
		{"1e3", 0, false},
		{"inf", 0, false},
		{"NaN", 0, false},
		{"0x10", 0, false},
		{"1_000", 0, false},
		{"10 s", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		in   string
		want advisorylock.Key
		ok   bool
	}{
		{"42", advisorylock.Int64Key(42), true},
		{"-9223372036854775808", advisorylock.Int64Key(-1 << 63), true},
		{"1,2", advisorylock.PairKey(1, 2), true},
		{"(-107789403,-1898803861)", advisorylock.KeyFromName("test-lock"), true},
		{" ( 1 , 2 ) ", advisorylock.PairKey(1, 2), true},
		{"9223372036854775808", advisorylock.Key{}, false},
		{"1,", advisorylock.Key{}, false},
		{"(1,2", advisorylock.Key{}, false},
		{"x", advisorylock.Key{}, false},
		{"", advisorylock.Key{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseKey(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseKey(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	tests := []struct {
		name   string
		conn   string
		env    map[string]string
		secret string
	}{
		{"url", "postgres://u:pa55word@h/d", nil, "pa55word"},
		{"url escaped", "postgres://u:p%40ss%2Fword@h/d", nil, "p@ss/word"},
		{"url query", "postgres://u@h/d?password=qu3ry&sslmode=disable", nil, "qu3ry"},
		{"malformed url", "postgres://u:br0ken@h:port/d", nil, "br0ken"},
		{"keyword", "host=h password=kw-secret user=u", nil, "kw-secret"},
		{"keyword quoted", `host=h password='quoted secret' user=u`, nil, "quoted secret"},
		{"PGPASSWORD", "", map[string]string{"PGPASSWORD": "from-env"}, "from-env"},
		{"PG_CONNECTION_STRING", "", map[string]string{EnvConnectionString: "postgres://u:envpw@h/d"}, "envpw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			r := newRedactor(connSource{conn: tt.conn}, getenv)
			msg := "failed: " + tt.secret + " and " + tt.conn + " and " + tt.env[EnvConnectionString]
			got := r.clean(msg)
			if strings.Contains(got, tt.secret) {
				t.Errorf("clean(%q) = %q; the secret %q is still there", msg, got, tt.secret)
			}
		})
	}
}

func TestPoolConfig_parseErrorHidesPassword(t *testing.T) {
	for _, conn := range []string{
		"postgres://u:s3cret-pw@127.0.0.1:notaport/db",
		"postgres://u:s3cret-pw@[::1/db",
		"host=127.0.0.1 port=x password=s3cret-pw",
		"host=127.0.0.1 password='s3cret-pw",
		"postgres://u@h/d?password=s3cret-pw&connect_timeout=soon",
	} {
		src := connSource{conn: conn, from: "--db"}
		_, err := poolConfig(src, newRedactor(src, func(string) string { return "" }))
		if err == nil {
			t.Errorf("poolConfig(%q) = nil error; want one", conn)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "from --db") {
			t.Errorf("poolConfig(%q) error = %q; want it to name --db and not show the password", conn, err)
		}
	}
}

// TestHelp_matchesDoc checks that every option in the parser's table is in
// the help text and in the package documentation, the manual.
func TestHelp_matchesDoc(t *testing.T) {
	var help strings.Builder
	writeHelp(&help)
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flagSpecs {
		names := []string{}
		for _, l := range f.long {
			names = append(names, "--"+l)
		}
		if f.short != 0 {
			names = append(names, "-"+string(f.short)+",")
		}
		for _, n := range names {
			if !strings.Contains(help.String(), n) {
				t.Errorf("help does not mention %s", n)
			}
			if !strings.Contains(string(doc), n) {
				t.Errorf("doc.go does not mention %s", n)
			}
		}
	}
	// The synopsis is the same in the usage, the help and the manual, and
	// shows options after the lock name too.
	if !strings.Contains(synopsis, "<lock-name> [options] --") {
		t.Errorf("synopsis %q; want it to show options after the lock name", synopsis)
	}
	for _, line := range strings.Split(strings.TrimSpace(synopsis), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "usage: ")
		if !strings.HasPrefix(line, "withlock ") {
			continue
		}
		if !strings.Contains(help.String(), line) || !strings.Contains(string(doc), line) {
			t.Errorf("help or doc.go does not show the synopsis line %q", line)
		}
	}
	for _, code := range []string{"64", "69", "75", "126", "127", "128+N"} {
		if !strings.Contains(help.String(), code) || !strings.Contains(string(doc), code) {
			t.Errorf("help or doc.go does not mention exit status %s", code)
		}
	}
}

// TestHelp_passwordInDB checks that the help and the manual warn that a
// password in --db shows in ps, and name the safer places for it.
func TestHelp_passwordInDB(t *testing.T) {
	var help strings.Builder
	writeHelp(&help)
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	ps := regexp.MustCompile(`\bps\b`)
	// doc.go's comment as text: "//" and "// " dropped from each line.
	manual := regexp.MustCompile(`(?m)^// ?`).ReplaceAllString(string(doc), "")
	for name, text := range map[string]string{"help": help.String(), "doc.go": manual} {
		found := false
		for _, para := range strings.Split(text, "\n\n") {
			if !strings.Contains(para, "--db") || !ps.MatchString(para) {
				continue
			}
			found = true
			for _, want := range []string{"PG_CONNECTION_STRING", "PGPASSWORD", "pgpass", "PGPASSFILE"} {
				if !strings.Contains(para, want) {
					t.Errorf("%s: the warning about --db and ps does not mention %s:\n%s", name, want, para)
				}
			}
		}
		if !found {
			t.Errorf("%s does not warn that a password in --db shows in ps", name)
		}
	}
}

func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"x\x00--\x00true",
		"-nsv\x00-w\x001.5\x00x\x00--\x00sh\x00-c\x00exit 3",
		"--key=(1,2)\x00--\x00true",
		"--status\x00--key\x00-9",
		"-E\x00256\x00x",
		"--timeout=\x00x\x00--",
		"-w-1\x00x\x00--\x00a",
		"x\x00-n\x00--\x00a",
		"x\x00--db\x00postgres://h/d\x00--\x00cmd",
		"x\x00-sw\x002\x00--\x00cmd\x00-n",
		"--status\x00x\x00--db=h",
		"--slots\x003\x00x\x00--\x00true",
		"x\x00--slots=2\x00-n\x00--\x00true",
		"--status\x00--slots\x001000\x00x",
		"--slots\x000\x00x\x00--\x00true",
		"--slots\x002\x00--key\x001\x00--\x00true",
		"-s\x00--slots\x002\x00x\x00--\x00true",
		"--slots\x002\x00--every\x001h\x00x\x00--\x00true",
		"x\x00--fencing\x00--slots=3\x00--\x00true",
		"--fencing\x00x\x00--\x00sh",
		"--fencing=1\x00x\x00--\x00sh",
		"x\x00y\x00--\x00a",
		"x\x00--db\x00--\x00a",
		"x\x00--\x00--\x00--",
		"--\x00--\x00--",
		"-h",
		"--every\x0030m\x00x\x00--\x00true",
		"x\x00--every=1.5\x00--schema\x00Jobs\x00--\x00true",
		"--status\x00--every\x001h\x00x",
		"--every\x000\x00x\x00--\x00true",
		"--every\x001h\x00--key\x001\x00--\x00true",
		"--every\x001h\x00-s\x00x\x00--\x00a",
		"--schema\x00s\x00x\x00--\x00a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := append([]string{"--db", "postgres://u:F0zzS3cret@h/d"}, strings.Split(s, "\x00")...)
		o, err := parseArgs(args)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseArgs(%q) error %v is not a usage error", args, err)
			}
			if !strings.Contains(s, "F0zzS3cret") && strings.Contains(err.Error(), "F0zzS3cret") {
				t.Fatalf("parseArgs(%q) error %q shows the --db password", args, err)
			}
			return
		}
		if o.help {
			return
		}
		if (o.name == "") == !o.hasKey {
			t.Fatalf("parseArgs(%q) = name %q, hasKey %v; want exactly one", args, o.name, o.hasKey)
		}
		if o.status {
			if o.command != nil {
				t.Fatalf("parseArgs(%q): status with a command", args)
			}
			return
		}
		// The command is the arguments after the first "--", verbatim and
		// non-empty: "--" is never an option's value.
		dd := slices.Index(args, "--")
		if dd < 0 || len(o.command) == 0 || !reflect.DeepEqual(o.command, args[dd+1:]) {
			t.Fatalf("parseArgs(%q) command = %q; want the arguments after the first \"--\"", args, o.command)
		}
		// Options may come before or after the name: moving the name to
		// the front changes nothing.
		if o.name != "" {
			if i := slices.Index(args[:dd], o.name); i >= 0 && (i == 0 || !takesValue(args[i-1])) {
				moved := append([]string{o.name}, slices.Delete(slices.Clone(args), i, i+1)...)
				if o2, err := parseArgs(moved); err != nil || !reflect.DeepEqual(o2, o) {
					t.Fatalf("parseArgs(%q) = %+v, %v; parseArgs(%q) = %+v", moved, o2, err, args, o)
				}
			}
		}
		if o.slots < 0 || o.slots > 1000 || (o.slots > 0 && (o.hasKey || o.shared || o.every > 0 || o.fencing)) {
			t.Fatalf("parseArgs(%q) = %+v: --slots out of range, or with --key, -s, --every or --fencing", args, o)
		}
		// --every: a positive period, on a name, exclusive; --schema with
		// --every or --status.
		if o.every < 0 || o.every > 0 && (o.name == "" || o.shared) || o.hasSchema && o.every == 0 && !o.status {
			t.Fatalf("parseArgs(%q) = %+v: --every or --schema where they do not go", args, o)
		}
		if o.timeout < 0 || o.grace < 0 || o.keepalive < 0 || o.conflict < 0 || o.conflict > 255 {
			t.Fatalf("parseArgs(%q) = %+v: a value out of range", args, o)
		}
	})
}

// takesValue reports whether arg is an option that takes the next argument
// as its value.
func takesValue(arg string) bool {
	switch {
	case strings.HasPrefix(arg, "--"):
		f := lookupLong(arg[2:])
		return f != nil && f.arg != ""
	case strings.HasPrefix(arg, "-") && len(arg) > 1:
		for j := 1; j < len(arg); j++ {
			f := lookupShort(arg[j])
			if f == nil {
				return false
			}
			if f.arg != "" {
				return j == len(arg)-1
			}
		}
	}
	return false
}

// flockSeconds matches flock's plain seconds, with a sign as Go takes one.
var flockSeconds = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$`)

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "1.5", ".5", "500ms", "1h2m3.5s", "-1", "-0s", "1e9", "inf", "9999999999", "1.", "+3s", "1µs", "1m5", "-.5", "+-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("parseDuration(%q) = %v with error %v; want 0", s, d, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseDuration(%q) = %v; want no negative duration", s, d)
		}
		text := s
		if flockSeconds.MatchString(s) {
			text += "s"
		}
		want, gerr := time.ParseDuration(text)
		if gerr != nil || want != d {
			t.Fatalf("parseDuration(%q) = %v; time.ParseDuration says %v, %v", s, d, want, gerr)
		}
	})
}
