// Command bench measures advisorylock side by side with the raw-pgx floor and
// two peers' PostgreSQL lockers, on one PostgreSQL server in one run, and
// prints the results as markdown on stdout. Run it from this directory with
//
//	go run .
//
// It is a module of its own, so that the peers it compares with
// (github.com/pressly/goose/v3 and github.com/golang-migrate/migrate/v4) never
// enter the library's go.mod.
//
// It uses the database in PG_CONNECTION_STRING when that is set (it creates
// and drops one table with a name unique to the run there, for golang-migrate,
// and uses lock keys unique to the run). Otherwise it starts a throwaway
// PostgreSQL the way the library's tests do (internal/pgtest) and stops it at
// the end.
//
// Four measurements, described in README.md:
//
//  1. the uncontended lock/unlock cycle (ns/op, allocs/op);
//  2. the contended hand-off between holders in separate pools;
//  3. throughput with many distinct keys across goroutines;
//  4. coalescing: many goroutines of one process on one key.
//
// Progress goes to stderr (-q silences it); stdout gets the markdown report
// only, printed once the server has been stopped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// config is what the flags set.
type config struct {
	sections string
	match    *regexp.Regexp // rows to run, by name; nil: all
	quiet    bool

	cycleRounds int
	cycleTime   time.Duration

	holders       int
	hold          time.Duration
	handoffRounds int
	handoffTime   time.Duration
	pollHandoffs  int
	pollTime      time.Duration

	goroutines int
	keys       int
	poolSize   int
	tputRounds int
	tputTime   time.Duration

	coalesceGoroutines int
	coalescePool       int
	coalesceTime       time.Duration
}

func defaultConfig() config {
	return config{
		sections:    "cycle,handoff,throughput,coalesce",
		cycleRounds: 40,
		cycleTime:   25 * time.Millisecond,

		holders:       4,
		hold:          2 * time.Millisecond,
		handoffRounds: 3,
		handoffTime:   time.Second,
		pollHandoffs:  12,
		pollTime:      10 * time.Second,

		goroutines: 16,
		keys:       1000,
		poolSize:   8,
		tputRounds: 5,
		tputTime:   600 * time.Millisecond,

		coalesceGoroutines: 200,
		coalescePool:       4,
		coalesceTime:       3 * time.Second,
	}
}

func parseFlags(args []string) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run . [flags]\n\n"+
			"Compares advisorylock with raw pgx, goose's and golang-migrate's lockers on one\n"+
			"PostgreSQL (PG_CONNECTION_STRING, else a throwaway server) and prints markdown.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.sections, "sections", c.sections, "comma-separated `list` of measurements to run: cycle, handoff, throughput, coalesce")
	fs.BoolVar(&c.quiet, "q", false, "no progress on stderr")
	match := fs.String("match", "", "run only the rows whose name matches `regexp` (the floors and the `select 1` reference always run)")
	scale := fs.Float64("scale", 1, "multiply every duration and count of samples by `f` (e.g. 5 for a longer, steadier run)")

	fs.IntVar(&c.cycleRounds, "cycle-rounds", c.cycleRounds, "uncontended: rounds (each row once, the floor between every two rows; medians are reported)")
	fs.DurationVar(&c.cycleTime, "cycle-time", c.cycleTime, "uncontended: length of one contender's batch in a round")

	fs.IntVar(&c.holders, "holders", c.holders, "hand-off: holders passing the lock around, each in its own pool")
	fs.DurationVar(&c.hold, "hold", c.hold, "hand-off: how long each holder holds the lock")
	fs.IntVar(&c.handoffRounds, "handoff-rounds", c.handoffRounds, "hand-off: interleaved rounds per blocking contender")
	fs.DurationVar(&c.handoffTime, "handoff-time", c.handoffTime, "hand-off: length of a round of a blocking contender")
	fs.IntVar(&c.pollHandoffs, "poll-handoffs", c.pollHandoffs, "hand-off: hand-offs to record for the polling locker (goose)")
	fs.DurationVar(&c.pollTime, "poll-time", c.pollTime, "hand-off: time limit for the polling locker (goose)")

	fs.IntVar(&c.goroutines, "goroutines", c.goroutines, "throughput: goroutines locking random keys")
	fs.IntVar(&c.keys, "keys", c.keys, "throughput: distinct keys")
	fs.IntVar(&c.poolSize, "pool", c.poolSize, "throughput: connections in each contender's pool")
	fs.IntVar(&c.tputRounds, "throughput-rounds", c.tputRounds, "throughput: interleaved rounds per contender (the median is reported)")
	fs.DurationVar(&c.tputTime, "throughput-time", c.tputTime, "throughput: length of a round")

	fs.IntVar(&c.coalesceGoroutines, "coalesce-goroutines", c.coalesceGoroutines, "coalescing: goroutines on one key")
	fs.IntVar(&c.coalescePool, "coalesce-pool", c.coalescePool, "coalescing: connections in the shared pool")
	fs.DurationVar(&c.coalesceTime, "coalesce-time", c.coalesceTime, "coalescing: length of the contended phase")

	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			return c, fmt.Errorf("-match: %w", err)
		}
		c.match = re
	}
	if *scale <= 0 {
		return c, fmt.Errorf("-scale must be positive, got %v", *scale)
	}
	c.scale(*scale)
	for _, s := range c.sectionList() {
		switch s {
		case "cycle", "handoff", "throughput", "coalesce":
		default:
			return c, fmt.Errorf("-sections: unknown measurement %q", s)
		}
	}
	if c.holders < 2 || c.goroutines < 1 || c.keys < 1 || c.poolSize < 1 ||
		c.coalesceGoroutines < 1 || c.coalescePool < 2 || c.cycleRounds < 1 ||
		c.handoffRounds < 1 || c.tputRounds < 1 || c.pollHandoffs < 1 {
		return c, errors.New("counts must be positive (-holders at least 2, -coalesce-pool at least 2)")
	}
	return c, nil
}

// scale stretches the run: durations and sample counts, not the shape of the
// workload.
func (c *config) scale(f float64) {
	if f == 1 {
		return
	}
	d := func(p *time.Duration) { *p = time.Duration(float64(*p) * f) }
	n := func(p *int) { *p = max(1, int(float64(*p)*f+0.5)) }
	d(&c.cycleTime)
	d(&c.handoffTime)
	d(&c.pollTime)
	d(&c.tputTime)
	d(&c.coalesceTime)
	n(&c.pollHandoffs)
}

func (c *config) sectionList() []string {
	var out []string
	for s := range strings.SplitSeq(c.sections, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// runs reports whether the row called name is to run: floors always do.
func (c *config) runs(name string, floor bool) bool {
	return floor || c.match == nil || c.match.MatchString(name)
}

func (c *config) has(section string) bool {
	for _, s := range c.sectionList() {
		if s == section {
			return true
		}
	}
	return false
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run runs the benchmark and returns the exit status: 0, 2 for bad flags, 1
// on failure, 130 when interrupted. The server, if started, is stopped on
// every path before the report is printed.
func run(args []string) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, err := benchmark(ctx, cfg, newProgress(cfg.quiet))
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "bench: interrupted; the server, if started, is stopped")
		return 130
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench: failed:", err)
		return 1
	}
	rep.env.elapsed = time.Since(start)
	if err := rep.write(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// progress reports what the run is doing, on stderr.
type progress struct {
	quiet bool
	t0    time.Time
}

func newProgress(quiet bool) *progress { return &progress{quiet: quiet, t0: time.Now()} }

func (p *progress) say(format string, args ...any) {
	if p == nil || p.quiet {
		return
	}
	fmt.Fprintf(os.Stderr, "bench %5.1fs: %s\n", time.Since(p.t0).Seconds(), fmt.Sprintf(format, args...))
}
