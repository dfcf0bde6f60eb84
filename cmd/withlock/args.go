package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/advisorylock/advisorylock"
)

// options is a parsed command line.
type options struct {
	name       string           // the lock name; "" when key is set
	key        advisorylock.Key // the raw key, when hasKey
	hasKey     bool             // --key was given
	db         string           // --db, when hasDB
	hasDB      bool             // --db was given: it wins over the environment
	nonblock   bool             // -n, or -w 0 as in flock
	timeout    time.Duration    // -w
	hasTimeout bool             // -w was given
	shared     bool             // -s
	conflict   int              // -E
	verbose    bool             // -v
	status     bool             // --status
	slots      int              // --slots: a semaphore of that many slots; 0: a lock
	help       bool             // -h: print the manual and nothing else
	grace      time.Duration    // --grace between SIGTERM and SIGKILL on a lost lock
	keepalive  time.Duration    // --keepalive, the probe of a held lock
	every      time.Duration    // --every: at most one successful run per period; 0 when not given
	schema     string           // --schema of the runs table, when hasSchema
	hasSchema  bool             // --schema was given
	fencing    bool             // --fencing: the command gets a token in WITHLOCK_TOKEN
	command    []string         // everything after "--", verbatim
}

// Defaults of the options that have one.
const (
	defaultConflictExitCode = 1
	defaultGrace            = 10 * time.Second
	defaultKeepalive        = advisorylock.DefaultKeepalive
)

// A usageError is a command line that withlock cannot run (exit 64).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// A flagSpec describes one option. The table drives the parser and the
// option list of the help text, so the two cannot drift apart.
type flagSpec struct {
	short byte     // 0 for none
	long  []string // the first is the name shown in help; the rest are aliases
	arg   string   // the value's name in help; "" for an option without value
	help  string
	set   func(o *options, val string) error
}

// flagSpecs lists the options in the order the help text shows them.
var flagSpecs = []flagSpec{
	{short: 'n', long: []string{"nonblock", "nb"},
		help: "fail at once if the lock is held",
		set:  func(o *options, _ string) error { o.nonblock = true; return nil }},
	{short: 'w', long: []string{"timeout", "wait"}, arg: "D",
		help: "wait at most D for the lock: seconds as flock\n" +
			"takes them (1.5) or a Go duration (500ms);\n0 is -n",
		set: func(o *options, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return usagef("-w/--timeout: %v", err)
			}
			o.timeout, o.hasTimeout = d, true
			return nil
		}},
	{short: 's', long: []string{"shared"},
		help: "shared mode: shared holders run together",
		set:  func(o *options, _ string) error { o.shared = true; return nil }},
	{short: 'x', long: []string{"exclusive"},
		help: "exclusive mode (the default; -e works too)",
		set:  func(o *options, _ string) error { o.shared = false; return nil }},
	{short: 'E', long: []string{"conflict-exit-code"}, arg: "N",
		help: "exit status when -n or -w cannot get the\nlock (default 1)",
		set: func(o *options, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 255 {
				return usagef("-E/--conflict-exit-code: %q is not a number from 0 to 255", v)
			}
			o.conflict = n
			return nil
		}},
	{short: 'v', long: []string{"verbose"},
		help: "say on stderr when waiting, acquired (and\nafter how long) and released",
		set:  func(o *options, _ string) error { o.verbose = true; return nil }},
	{long: []string{"key"}, arg: "K",
		help: "lock the raw key K instead of a name: a\n" +
			"bigint (42) or an int4 pair (1,2)",
		set: func(o *options, v string) error {
			k, err := parseKey(v)
			if err != nil {
				return usagef("--key: %v", err)
			}
			o.key, o.hasKey = k, true
			return nil
		}},
	{long: []string{"db"}, arg: "URL",
		help: "the database, as a URL or keyword/value\n" +
			"string; wins over the environment",
		set: func(o *options, v string) error { o.db, o.hasDB = v, true; return nil }},
	{long: []string{"slots"}, arg: "N",
		help: "a semaphore of N slots (1 to 1000): at most\n" +
			"N commands run under the name at once",
		set: func(o *options, v string) (err error) { o.slots, err = parseSlots(v); return err }},
	{long: []string{"status"},
		help: "print the lock's holders and waiters with\n" +
			"their backend pid, and its last run (of\n" +
			"--every), and exit 0; no command",
		set: func(o *options, _ string) error { o.status = true; return nil }},
	{long: []string{"grace"}, arg: "D",
		help: "on a lost lock, time from SIGTERM to SIGKILL\n" +
			"of the command (default 10s)",
		set: func(o *options, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return usagef("--grace: %v", err)
			}
			o.grace = d
			return nil
		}},
	{long: []string{"keepalive"}, arg: "D",
		help: "probe the held lock's connection every D:\n" +
			"a silent network is noticed within 2×D\n(default 3s; 0: no probe)",
		set: func(o *options, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return usagef("--keepalive: %v", err)
			}
			o.keepalive = d
			return nil
		}},
	{long: []string{"every"}, arg: "P",
		help: "run the command only if no successful run\n" +
			"began in the last P (a Go duration, 30m);\n" +
			"else exit 0 without running it (-v says why)",
		set: func(o *options, v string) error { return setEvery(o, v) }},
	{long: []string{"schema"}, arg: "S",
		help: "the schema of the runs table of --every and\n--status (default public)",
		set:  func(o *options, v string) error { o.schema, o.hasSchema = v, true; return nil }},
	{long: []string{"fencing"},
		help: "give the command the lock's fencing token,\n" +
			"larger for each holder, in WITHLOCK_TOKEN",
		set: func(o *options, _ string) error { o.fencing = true; return nil }},
	{short: 'h', long: []string{"help"},
		help: "print this help",
		set:  func(o *options, _ string) error { o.help = true; return nil }},
}

// shortAliases are short options that stand for another's: flock's -e for
// --exclusive.
var shortAliases = map[byte]byte{'e': 'x'}

func lookupShort(c byte) *flagSpec {
	if a, ok := shortAliases[c]; ok {
		c = a
	}
	for i := range flagSpecs {
		if flagSpecs[i].short == c {
			return &flagSpecs[i]
		}
	}
	return nil
}

func lookupLong(name string) *flagSpec {
	for i := range flagSpecs {
		for _, l := range flagSpecs[i].long {
			if l == name {
				return &flagSpecs[i]
			}
		}
	}
	return nil
}

// parseArgs parses withlock's arguments (without the program name):
//
//	[options] <lock-name> [options] -- <command> [args...]
//	[options] --key K -- <command> [args...]
//	[options] --status (<lock-name> | --key K) [options]
//
// Options may come before and after the lock name, up to the first "--", as
// getopt permutes them, so that the documented form
// "withlock <lock-name> [--db URL] -- <command>" works. Short options may be
// clustered (-nv) and take their value attached or as the next argument (-w5,
// -w 5); long ones take it after "=" or as the next argument. A value is taken
// verbatim even if it starts with "-", but "--" is never a value: it always
// starts the command, and everything after it is the command, untouched.
// -h/--help stops the parsing and returns options with help set. Any other
// problem is a *usageError.
//
// parseArgs is pure: it reads no environment and does no I/O.
func parseArgs(args []string) (options, error) {
	o := options{conflict: defaultConflictExitCode, grace: defaultGrace, keepalive: defaultKeepalive}
	var (
		extra    string   // a second argument that is not an option, if hasExtra
		hasExtra bool     // parsing stopped at extra
		rest     []string // from the "--" on, if any
	)
	for i := 0; i < len(args) && !hasExtra && rest == nil; i++ {
		a := args[i]
		var err error
		switch {
		case a == "--":
			rest = args[i:]
		case a == "-" || !strings.HasPrefix(a, "-"):
			// Not an option: the lock name, or the command without its "--"
			// (or a second name), where parsing stops: what follows may be
			// the command's own options.
			switch {
			case o.name != "":
				extra, hasExtra = a, true
			case a == "":
				return options{}, usagef("empty lock name")
			default:
				o.name = a
			}
		case strings.HasPrefix(a, "--"):
			i, err = parseLong(&o, args, i)
		default:
			i, err = parseShort(&o, args, i)
		}
		if err != nil {
			return options{}, err
		}
		if o.help {
			return o, nil
		}
	}
	switch {
	case o.status && (hasExtra || rest != nil):
		return options{}, usagef("--status takes no command")
	case hasExtra && slices.Contains(args, "--"):
		return options{}, usagef(`two lock names, %s and %s: give one, and the command after "--"`, quoteArg(o.name), quoteArg(extra))
	case hasExtra:
		return options{}, usagef(`missing "--" before the command %s`, quoteArg(extra))
	case o.name != "" && o.hasKey:
		return options{}, usagef("give a lock name or --key, not both")
	case o.name == "" && !o.hasKey:
		return options{}, usagef("missing lock name (or --key)")
	}
	if err := checkSlots(o); err != nil {
		return options{}, err
	}
	if o.hasTimeout && o.timeout == 0 {
		o.nonblock = true // flock(1): a zero timeout does not wait
	}
	if err := checkEvery(o); err != nil {
		return options{}, err
	}
	switch {
	case o.status:
		return o, nil
	case rest == nil:
		return options{}, usagef(`missing "--" and the command to run`)
	case len(rest) == 1:
		return options{}, usagef(`missing command after "--"`)
	}
	o.command = rest[1:]
	return o, nil
}

// parseLong parses the long option args[i] ("--name" or "--name=value") and
// returns the index of the last argument it used.
func parseLong(o *options, args []string, i int) (int, error) {
	name, val, hasVal := strings.Cut(args[i][2:], "=")
	f := lookupLong(name)
	if f == nil {
		return i, usagef("unknown option --%s", quoteName(name))
	}
	switch {
	case f.arg == "" && hasVal:
		return i, usagef("option --%s takes no value", name)
	case f.arg != "" && !hasVal:
		if i+1 >= len(args) || args[i+1] == "--" {
			return i, usagef("option --%s needs a value", name)
		}
		i++
		val = args[i]
	}
	return i, f.set(o, val)
}

// parseShort parses the cluster of short options args[i] ("-nv", "-w5",
// "-w" followed by a value) and returns the index of the last argument it
// used.
func parseShort(o *options, args []string, i int) (int, error) {
	a := args[i]
	for j := 1; j < len(a); j++ {
		f := lookupShort(a[j])
		if f == nil {
			return i, usagef("unknown option -%s", quoteName(a[j:j+1]))
		}
		if f.arg == "" {
			if err := f.set(o, ""); err != nil {
				return i, err
			}
			if o.help {
				return i, nil
			}
			continue
		}
		val := a[j+1:]
		if val == "" {
			if i+1 >= len(args) || args[i+1] == "--" {
				return i, usagef("option -%c needs a value", a[j])
			}
			i++
			val = args[i]
		}
		return i, f.set(o, val)
	}
	return i, nil
}

// quoteName shows an option name from the command line safely.
func quoteName(s string) string {
	q := strconv.Quote(s)
	if q[1:len(q)-1] == s {
		return s
	}
	return q
}

// quoteArg shows an argument in a message, shortened, with the password of
// a connection string typed in the wrong place masked.
func quoteArg(s string) string {
	s = redactArg(s)
	const max = 40
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// redactArg masks the password of an argument that is a connection string: a
// URL with one, or keyword/value settings with password=.
func redactArg(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	if i := strings.Index(strings.ToLower(s), "password="); i >= 0 {
		return s[:i] + "password=xxxxx"
	}
	return s
}

// errNegative reports a negative duration.
var errNegative = errors.New("negative duration")

// parseDuration parses a duration as flock(1) takes one, a number of seconds
// with an optional fraction ("5", "1.5", ".25"), or as a Go duration ("500ms",
// "1m30s"). Negative durations are refused; "-0" is zero.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	text := s
	if isDecimalSeconds(strings.TrimLeft(s, "+-")) && len(strings.TrimLeft(s, "+-")) >= len(s)-1 {
		text = s + "s" // with at most one sign, as time.ParseDuration takes it
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %s: want seconds (1.5) or a Go duration (500ms)", quoteArg(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("%w %s", errNegative, quoteArg(s))
	}
	return d, nil
}

// isDecimalSeconds reports whether s is digits with at most one '.' and at
// least one digit: flock's plain seconds.
func isDecimalSeconds(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// parseKey parses a raw advisory lock key: a bigint ("42", "-7") or a pair of
// int4 ("1,2"), optionally in parentheses as Key.String prints a pair
// ("(1,2)"); spaces around the numbers are allowed.
func parseKey(s string) (advisorylock.Key, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "(") && strings.HasSuffix(t, ")") {
		t = t[1 : len(t)-1]
	}
	bad := fmt.Errorf("invalid key %s: want a bigint (42) or an int4 pair (1,2)", quoteArg(s))
	if a, b, ok := strings.Cut(t, ","); ok {
		k1, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 32)
		k2, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 32)
		if err1 != nil || err2 != nil {
			return advisorylock.Key{}, bad
		}
		return advisorylock.PairKey(int32(k1), int32(k2)), nil
	}
	k, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil {
		return advisorylock.Key{}, bad
	}
	return advisorylock.Int64Key(k), nil
}
