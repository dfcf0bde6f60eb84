// Package interleave runs benchmark cases call by call, in an order shuffled
// each round, so that a machine whose load drifts (the database server shares
// its cores) weighs on each case alike, and reports each case's median time
// per call. The figures that matter are ratios to the first case, the floor,
// measured in the same run.
package interleave

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// A Case is one thing to time: Call runs it once.
type Case struct {
	Name string
	Call func() error
}

// Run runs the cases in turns within b's loop, one call per iteration, and
// reports each case's median time per call as NAME-ns/op and its ratio to
// the first case's as NAME/FIRST. It returns the medians, in nanoseconds, in
// the order of cases, or nil when b's loop gave some case no turn. A call
// that fails fails b.
func Run(b *testing.B, cases []Case) []float64 {
	b.Helper()
	durations := make([][]time.Duration, len(cases))
	order := make([]int, len(cases))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(1, 2))
	i := 0
	for b.Loop() {
		if i%len(order) == 0 {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		k := order[i%len(order)]
		i++
		start := time.Now()
		if err := cases[k].Call(); err != nil {
			b.Fatalf("%s: %v", cases[k].Name, err)
		}
		durations[k] = append(durations[k], time.Since(start))
	}
	medians := make([]float64, len(cases))
	for k, d := range durations {
		if len(d) == 0 {
			return nil
		}
		slices.Sort(d)
		medians[k] = float64(d[len(d)/2])
		b.ReportMetric(medians[k], cases[k].Name+"-ns/op")
	}
	for k := 1; k < len(cases); k++ {
		b.ReportMetric(medians[k]/medians[0], cases[k].Name+"/"+cases[0].Name)
	}
	return medians
}

// Bench runs each case as a sub-benchmark of b named after it, which reports
// its allocations per call, then all of them in turns as the sub-benchmark
// "interleaved" (see Run), after which report, unless nil, may report more
// metrics of its own from Run's medians.
func Bench(b *testing.B, cases []Case, report func(b *testing.B, medians []float64)) {
	b.Helper()
	for _, c := range cases {
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		if medians := Run(b, cases); medians != nil && report != nil {
			report(b, medians)
		}
	})
}
