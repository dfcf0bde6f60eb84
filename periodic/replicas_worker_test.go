package periodic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/periodic"
)

// envReplicaWorker names the environment variable that makes the test binary
// a replica process of TestReplicas instead of running the tests. It holds
// the replica's replicaConfig as JSON.
const envReplicaWorker = "ADVISORYLOCK_PERIODIC_WORKER"

// replicaConfig is what TestReplicas tells a replica process.
type replicaConfig struct {
	DSN      string
	Identity string        // replica-SLOT.INCARNATION
	Name     string        // the job
	Every    time.Duration // Tick's interval
	Period   time.Duration
	Hold     time.Duration // how long a run lasts
	Skew     time.Duration // of the replica's clock
}

// The lines a replica writes on its standard output, each in one write:
//
//	ready            it is about to tick
//	running TOKEN    a run began, and fn was called with its token
const (
	lineReady   = "ready"
	lineRunning = "running"
)

// runReplicaWorker runs the replica process and exits, when the binary is
// one; otherwise it returns false. The replica ticks the job until its
// standard input closes (the parent's doing, or its death); each run prints
// its token, then lasts cfg.Hold. Tick's errors and failed attempts go to
// standard error, and a Tick that returns one exits 1.
func runReplicaWorker() bool {
	raw, ok := os.LookupEnv(envReplicaWorker)
	if !ok {
		return false
	}
	var cfg replicaConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", envReplicaWorker, err)
		os.Exit(2)
	}
	os.Exit(replica(cfg))
	return true
}

func replica(cfg replicaConfig) int {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	pool, err := pgxpool.New(ctx, cfg.DSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pool.Close()
	job := periodic.New(pool, cfg.Name, cfg.Period, periodic.WithIdentity(cfg.Identity),
		periodic.WithClockSkew(cfg.Skew), periodic.WithHooks(stderrHook{}))
	fmt.Println(lineReady)
	err = job.Tick(ctx, cfg.Every, func(ctx context.Context, run periodic.Run) error {
		fmt.Printf("%s %d\n", lineRunning, run.Token)
		t := time.NewTimer(cfg.Hold)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tick:", err)
		return 1
	}
	return 0
}

// stderrHook reports each attempt that failed, for the diagnosis of a
// failed TestReplicas.
type stderrHook struct{}

func (stderrHook) RunStart(ctx context.Context, _ *periodic.Job, _ periodic.RunStartData) context.Context {
	return ctx
}

func (stderrHook) RunEnd(_ context.Context, _ *periodic.Job, d periodic.RunEndData) {
	if d.Err != nil || d.FnErr != nil {
		fmt.Fprintf(os.Stderr, "attempt: run %d: fn: %v; err: %v\n", d.Run.Token, d.FnErr, d.Err)
	}
}
