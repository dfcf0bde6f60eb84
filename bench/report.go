package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// report is everything the run found.
type report struct {
	cfg        config
	env        environment
	cycles     []*cycleResult
	handoffs   *handoffReport
	throughput []*tputResult
	coalesce   []*coalesceResult
}

// environment describes where the figures were taken.
type environment struct {
	date     time.Time
	postgres string
	source   string
	goVer    string
	cpus     int
	procs    int
	cpuModel string
	modules  []string
	elapsed  time.Duration
}

// benchmark provisions the server, runs the measurements cfg selects and
// cleans up: connections, the run's table, the server, in that order,
// whatever happened.
func benchmark(ctx context.Context, cfg config, p *progress) (rep *report, err error) {
	dsn, source, stopServer, err := database(ctx, p)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := stopServer(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the server: %w", serr))
		}
		p.say("done")
	}()
	b := newBench(cfg, dsn, p)
	defer b.close()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if cerr := b.cleanupDatabase(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("dropping the run's table: %w", cerr))
		}
	}()

	rep = &report{cfg: cfg}
	if rep.env, err = b.environment(ctx, source); err != nil {
		return nil, err
	}
	if cfg.has("cycle") {
		if rep.cycles, err = b.runCycles(ctx); err != nil {
			return nil, fmt.Errorf("uncontended cycle: %w", err)
		}
	}
	if cfg.has("handoff") {
		if rep.handoffs, err = b.runHandoffs(ctx); err != nil {
			return nil, fmt.Errorf("hand-off: %w", err)
		}
	}
	if cfg.has("throughput") {
		if rep.throughput, err = b.runThroughput(ctx); err != nil {
			return nil, fmt.Errorf("throughput: %w", err)
		}
	}
	if cfg.has("coalesce") {
		if rep.coalesce, err = b.runCoalesce(ctx); err != nil {
			return nil, fmt.Errorf("coalescing: %w", err)
		}
	}
	return rep, nil
}

func (b *bench) environment(ctx context.Context, source string) (environment, error) {
	env := environment{
		date:   time.Now().UTC(),
		source: source,
		goVer:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		cpus:   runtime.NumCPU(),
		procs:  runtime.GOMAXPROCS(0),
	}
	c, err := b.conn(ctx, "environment")
	if err != nil {
		return env, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if err := c.QueryRow(ctx, "select current_setting('server_version')").Scan(&env.postgres); err != nil {
		return env, err
	}
	env.cpuModel = cpuModel()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/advisorylock/advisorylock":
				env.modules = append(env.modules, d.Path+" (this checkout, by replace)")
			case "github.com/jackc/pgx/v5", "github.com/pressly/goose/v3", "github.com/golang-migrate/migrate/v4":
				env.modules = append(env.modules, d.Path+" "+d.Version)
			}
		}
	}
	return env, nil
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// write prints the report as markdown.
func (r *report) write(out io.Writer) error {
	w := &mdWriter{w: bufio.NewWriter(out)}
	w.line("# advisorylock side by side")
	w.line("")
	w.line("`cd bench && go run .` — how each figure is obtained: bench/README.md.")
	w.line("")
	r.writeEnv(w)
	if r.cycles != nil {
		r.writeCycles(w)
	}
	if r.handoffs != nil {
		r.writeHandoffs(w)
	}
	if r.throughput != nil {
		r.writeThroughput(w)
	}
	if r.coalesce != nil {
		r.writeCoalesce(w)
	}
	return w.flush()
}

func (r *report) writeEnv(w *mdWriter) {
	e := r.env
	w.line("| environment | |")
	w.line("| --- | --- |")
	w.row("date", e.date.Format("2006-01-02 15:04 MST"))
	w.row("PostgreSQL", e.postgres+", "+e.source)
	w.row("Go", e.goVer)
	cpu := fmt.Sprintf("%d (GOMAXPROCS %d)", e.cpus, e.procs)
	if e.cpuModel != "" {
		cpu += ", " + e.cpuModel
	}
	w.row("CPUs", cpu)
	w.row("modules", strings.Join(e.modules, "<br>"))
	if rtt := r.roundTrip(); !math.IsNaN(rtt) {
		w.row("loopback round trip", fmtNs(rtt)+" (median `select 1` on a pinned connection)")
	}
	w.row("run time", fmt.Sprintf("%.0f s, server start and stop included", e.elapsed.Seconds()))
	w.line("")
}

// roundTrip is the loopback round trip (ns): the hand-off measurement's
// samples, else the uncontended `select 1` row.
func (r *report) roundTrip() float64 {
	if r.handoffs != nil {
		return median(r.handoffs.rtt)
	}
	for _, c := range r.cycles {
		if strings.Contains(c.c.name, "select 1") {
			return median(c.ns)
		}
	}
	return math.NaN()
}

func (r *report) writeCycles(w *mdWriter) {
	w.line("## 1. Uncontended lock/unlock cycle")
	w.line("")
	w.line(fmt.Sprintf("One complete cycle with an empty critical section, on a pool of its own. "+
		"%d rounds; in each, every row runs one batch of %v, in rotating order, and the session floor runs again "+
		"between every two rows. ns/op, allocs/op, B/op: medians over the batches. "+
		"× floor: median over rounds of the row's ns/op over the mean of the floor batches just before and after it "+
		"(transaction-scope rows: over the transaction floor's, through the same pairing). "+
		"Round trips: ns/op over the `select 1` row's.", r.cfg.cycleRounds, r.cfg.cycleTime))
	w.line("")
	w.line("| contender | ns/op | range over batches | × floor | round trips | allocs/op | B/op |")
	w.line("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	var rt float64
	for _, c := range r.cycles {
		if strings.Contains(c.c.name, "select 1") {
			rt = median(c.ns)
		}
	}
	for _, c := range r.cycles {
		name := c.c.name
		if c.c.floor {
			name = "**" + name + "**"
		}
		w.line(fmt.Sprintf("| %s | %.0f | %.0f–%.0f | %.3f | %.2f | %.0f | %.0f |",
			name, median(c.ns), slices.Min(c.ns), slices.Max(c.ns), median(c.ratio),
			median(c.ns)/rt, median(c.allocs), median(c.bytes)))
	}
	w.line("")
}

func (r *report) writeHandoffs(w *mdWriter) {
	h := r.handoffs
	rtt, idle := median(h.rtt), median(h.rttIdle)
	w.line(fmt.Sprintf("## 2. Contended hand-off: %d holders, one key", r.cfg.holders))
	w.line("")
	w.line(fmt.Sprintf("Each holder has its own pool (own connections); each holds the lock %v, then, once another holder "+
		"has taken it, asks again. Hand-off: from just before the releasing holder's unlock call to the return of the "+
		"next holder's lock call. Blocking lockers: %d interleaved rounds of %v; the polling one (goose) on its own, "+
		"until %d hand-offs or %v, twice. p99 is nearest-rank: with fewer than 100 hand-offs it is the maximum.",
		r.cfg.hold, r.cfg.handoffRounds, r.cfg.handoffTime, r.cfg.pollHandoffs, r.cfg.pollTime))
	w.line("")
	w.line(fmt.Sprintf("Round trip (RTT): median `select 1` on a pinned connection, back to back: %s (p99 %s, %d samples "+
		"between rounds). Idle RTT: the same, each after %v idle, so that client and server processes have gone to "+
		"sleep as a hand-off's have: %s (p99 %s, %d samples).",
		fmtNs(rtt), fmtNs(percentile(h.rtt, 99)), len(h.rtt), max(r.cfg.hold, time.Millisecond),
		fmtNs(idle), fmtNs(percentile(h.rttIdle, 99)), len(h.rttIdle)))
	w.line("")
	w.line("| contender | hand-offs | median | p99 | median ÷ RTT | median ÷ idle RTT | × floor (median) |")
	w.line("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	floors := map[string]float64{}
	for _, x := range h.results {
		if isFloor(x.c) {
			floors[x.c.scope] = median(x.samples)
		}
	}
	byID := map[string]*handoffResult{}
	for _, x := range h.results {
		name := x.c.name + x.variant
		if x.variant == "" {
			byID[x.c.id] = x
		}
		if isFloor(x.c) {
			name = "**" + name + "**"
		}
		if len(x.samples) == 0 {
			w.line(fmt.Sprintf("| %s | 0 | | | | | |", name))
			continue
		}
		m := median(x.samples)
		w.line(fmt.Sprintf("| %s | %d | %s | %s | %.2f | %.2f | %.2f |", name, len(x.samples), fmtNs(m),
			fmtNs(percentile(x.samples, 99)), m/rtt, m/idle, m/floors[x.c.scope]))
	}
	w.line("")
	if lib, goose := byID["lib"], byID["goose"]; lib != nil && len(lib.samples) > 0 {
		m := median(lib.samples)
		w.line(fmt.Sprintf("- Target, advisorylock's median hand-off ≤ 2 round trips: %.2f RTT (%.2f idle RTT; the raw floor: %.2f RTT), %s.",
			m/rtt, m/idle, floors["session"]/rtt, verdict(m/rtt <= 2)))
		if goose != nil && len(goose.samples) > 0 {
			f := median(goose.samples) / m
			w.line(fmt.Sprintf("- Target, ≥ 100× faster than a polling locker: goose's median is %.0f× advisorylock's, %s.", f, verdict(f >= 100)))
		}
		w.line("")
	}
}

// isFloor reports whether c is a raw-pgx floor.
func isFloor(c contender) bool { return c.id == "raw" || c.id == "raw-tx" }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func (r *report) writeThroughput(w *mdWriter) {
	w.line(fmt.Sprintf("## 3. Throughput: %d goroutines, %d distinct keys, pool of %d", r.cfg.goroutines, r.cfg.keys, r.cfg.poolSize))
	w.line("")
	w.line(fmt.Sprintf("Each goroutine locks a random key, does nothing, unlocks, again; one pool per contender. "+
		"Median of %d interleaved rounds of %v; a cycle counts when its unlock returned within the round. "+
		"× floor: median over rounds of the row's locks/s over the floor's (of the same scope) in the same round.", r.cfg.tputRounds, r.cfg.tputTime))
	w.line("")
	w.line("| contender | locks/s | range over rounds | × floor |")
	w.line("| --- | ---: | ---: | ---: |")
	floors := map[string][]float64{}
	for _, t := range r.throughput {
		if isFloor(t.c) {
			floors[t.c.scope] = t.perSec
		}
	}
	for _, t := range r.throughput {
		name := t.c.name
		if isFloor(t.c) {
			name = "**" + name + "**"
		}
		if t.skipped != "" {
			w.line(fmt.Sprintf("| %s | %s | | |", name, t.skipped))
			continue
		}
		var ratio []float64
		for i, v := range t.perSec {
			ratio = append(ratio, v/floors[t.c.scope][i])
		}
		w.line(fmt.Sprintf("| %s | %.0f | %.0f–%.0f | %.3f |", name, median(t.perSec), slices.Min(t.perSec), slices.Max(t.perSec), median(ratio)))
	}
	w.line("")
}

func (r *report) writeCoalesce(w *mdWriter) {
	w.line(fmt.Sprintf("## 4. Coalescing: %d goroutines of one process on one key, pool of %d", r.cfg.coalesceGoroutines, r.cfg.coalescePool))
	w.line("")
	w.line(fmt.Sprintf("Each goroutine locks the key, does nothing, unlocks, again, for %v. Waiting in the server: the most "+
		"ungranted requests for the key seen in pg_locks (sampled every 5 ms from a connection outside the pool). "+
		"Pool in use: the most of the pool's connections seen acquired (the probe's included). Probe: an unrelated "+
		"`select 1` through the same pool (Acquire, query, Release), every 10 ms, bounded to %v; idle: 100 probes "+
		"just before.", r.cfg.coalesceTime, probeTimeout))
	w.line("")
	w.line("| contender | cycles/s on the key | waiting in the server (max) | pool in use (max) | probe idle, median | probe under contention, median | p99 | timeouts |")
	w.line("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, c := range r.coalesce {
		busyMed, busyP99 := "—", "—"
		if len(c.busy) > 0 {
			busyMed, busyP99 = fmtNs(median(c.busy)), fmtNs(percentile(c.busy, 99))
		}
		w.line(fmt.Sprintf("| %s | %.0f | %d | %d of %d | %s | %s | %s | %d of %d |", c.c.name, c.perSec, c.maxWaiting,
			c.maxAcquired, r.cfg.coalescePool, fmtNs(median(c.idle)), busyMed, busyP99, c.timeouts, c.timeouts+len(c.busy)))
	}
	w.line("")
}

// fmtNs formats nanoseconds for people: µs below a millisecond, ms below a
// second, else s.
func fmtNs(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "—"
	case ns < 10e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case ns < 1e6:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	case ns < 10e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns < 1e9:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	default:
		return fmt.Sprintf("%.2f s", ns/1e9)
	}
}

// mdWriter writes lines, keeping the first error.
type mdWriter struct {
	w   *bufio.Writer
	err error
}

func (m *mdWriter) line(s string) {
	if m.err == nil {
		_, m.err = m.w.WriteString(s + "\n")
	}
}

func (m *mdWriter) row(k, v string) { m.line("| " + k + " | " + v + " |") }

func (m *mdWriter) flush() error {
	if m.err != nil {
		return m.err
	}
	return m.w.Flush()
}
