package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd", []float64{3, 1, 2}, 2},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
	if got := median([]float64(nil)); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v; want NaN", got)
	}
}

func TestPercentile(t *testing.T) {
	var hundred []float64
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, float64(i))
	}
	tests := []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{"p99 of 1..100", hundred, 99, 99},
		{"p50 of 1..100", hundred, 50, 50},
		{"p100 of 1..100", hundred, 100, 100},
		{"p99 of few is the max", []float64{5, 1, 9, 3}, 99, 9},
		{"p1 of few is the min", []float64{5, 1, 9, 3}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(p%v) = %v; want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestHandoffs(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	holds := []hold{
		// Out of order on purpose: handoffs sorts by acquisition.
		{holder: 2, acquired: at(12), released: at(20)},
		{holder: 1, acquired: at(0), released: at(10)},
		{holder: 3, acquired: at(23), released: at(30)},
		{holder: 3, acquired: at(31), released: at(40)}, // same holder: not a hand-off
		{holder: 1, acquired: at(45), released: at(50)},
		{holder: 2, acquired: at(70), released: at(80)}, // after the stop
	}
	got := handoffs(holds, at(60), 1)
	want := []float64{2e6, 3e6, 5e6}
	if len(got) != len(want) {
		t.Fatalf("handoffs = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("handoffs[%d] = %v; want %v", i, got[i], want[i])
		}
	}
	if got := handoffs(holds, at(60), 3); len(got) != 1 || got[0] != 5e6 {
		t.Errorf("handoffs skipping 3 = %v; want [5e6]", got)
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-scale", "2", "-sections", "cycle, coalesce"})
	if err != nil {
		t.Fatal(err)
	}
	d := defaultConfig()
	if c.cycleTime != 2*d.cycleTime || c.pollHandoffs != 2*d.pollHandoffs || c.holders != d.holders {
		t.Errorf("-scale 2: got cycleTime %v, pollHandoffs %d, holders %d; want %v, %d, %d",
			c.cycleTime, c.pollHandoffs, c.holders, 2*d.cycleTime, 2*d.pollHandoffs, d.holders)
	}
	if !c.has("cycle") || !c.has("coalesce") || c.has("handoff") {
		t.Errorf("sections = %q: has cycle %v, coalesce %v, handoff %v; want true, true, false",
			c.sections, c.has("cycle"), c.has("coalesce"), c.has("handoff"))
	}
	for _, args := range [][]string{{"-sections", "nope"}, {"-holders", "1"}, {"-scale", "0"}, {"extra"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q): got no error", args)
		}
	}
}

func TestFmtNs(t *testing.T) {
	tests := []struct {
		ns   float64
		want string
	}{
		{1234, "1.2 µs"},
		{65432, "65 µs"},
		{1234567, "1.23 ms"},
		{45678901, "45.7 ms"},
		{1.5e9, "1.50 s"},
		{math.NaN(), "—"},
	}
	for _, tt := range tests {
		if got := fmtNs(tt.ns); got != tt.want {
			t.Errorf("fmtNs(%v) = %q; want %q", tt.ns, got, tt.want)
		}
	}
}

// TestRunSmall runs every measurement, shortened, against a server, and
// checks the report's shape.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		pgtest.Unavailable(t, "runs a server and every locker: not in -short")
	}
	ctx := context.Background()
	if _, ok := os.LookupEnv(envConnectionString); !ok {
		// Fail early and clearly when there is no way to have a server.
		srv, err := pgtest.Start(ctx)
		if errors.Is(err, pgtest.ErrUnavailable) && !pgtest.Required() {
			pgtest.Unavailable(t, "%v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(envConnectionString, srv.DSN())
		t.Cleanup(func() {
			if err := srv.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
	cfg, err := parseFlags([]string{
		"-q", "-cycle-rounds", "2", "-cycle-time", "20ms",
		"-handoff-rounds", "1", "-handoff-time", "200ms", "-poll-handoffs", "1", "-poll-time", "3s",
		"-keys", "50", "-throughput-rounds", "1", "-throughput-time", "200ms",
		"-coalesce-goroutines", "20", "-coalesce-time", "300ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := benchmark(ctx, cfg, newProgress(true))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.write(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## 1. Uncontended", "## 2. Contended hand-off", "## 3. Throughput", "## 4. Coalescing",
		"| **raw pgx (floor)", "advisorylock: Mutex.Lock", "goose:", "golang-migrate", "PostgreSQL",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	for _, c := range rep.coalesce {
		if c.c.id == "lib" && c.maxWaiting > 0 {
			t.Errorf("advisorylock: %d requests waited in the server; want 0 (one per process)", c.maxWaiting)
		}
	}
}
