package advisorylockotel_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/advisorylock/advisorylock"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// The examples connect to the database named by DATABASE_URL; the test
// binary points it at its own throwaway server.
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

// printTrace prints the spans recorded as a tree, children under their
// parents in the order they started, with a few attributes.
func printTrace(spans []sdktrace.ReadOnlySpan) {
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	var print func(parent trace.SpanID, depth int)
	print = func(parent trace.SpanID, depth int) {
		for _, s := range spans {
			if s.Parent().SpanID() != parent {
				continue
			}
			line := []string{strings.Repeat("  ", depth) + s.Name()}
			for _, kv := range s.Attributes() {
				switch kv.Key {
				case advisorylockotel.OutcomeKey, advisorylockotel.LockModeKey, "error.type":
					line = append(line, string(kv.Key)+"="+kv.Value.String())
				}
			}
			if s.Status().Code != 0 {
				line = append(line, "status="+s.Status().Code.String())
			}
			fmt.Println(strings.Join(line, " "))
			print(s.SpanContext().SpanID(), depth+1)
		}
	}
	print(trace.SpanID{}, 0)
}

func ExampleNewHook() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	// The application's TracerProvider: here one that keeps the spans in
	// memory, to print them; in production one with an exporter.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(ctx)
	tracer := tp.Tracer("example")

	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))
	m := advisorylock.New(pool, "nightly-report", advisorylock.WithHooks(hook))

	ctx, job := tracer.Start(ctx, "nightly-job")
	_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
		// The work done under the lock shows under advisorylock.hold.
		_, span := tracer.Start(ctx, "send-report")
		defer span.End()
		return 0, nil
	})
	job.End()
	if err != nil {
		log.Fatal(err)
	}
	printTrace(spans.Ended())
	// Output:
	// nightly-job
	//   advisorylock.acquire advisorylock.lock.mode=exclusive advisorylock.outcome=acquired
	//   advisorylock.hold advisorylock.lock.mode=exclusive
	//     send-report
}

// A lock wait that runs out shows as a failed acquire span: its outcome, its
// error.type and its wait, and no hold span.
func ExampleNewHook_lockWait() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(ctx)

	// Another process holds the lock (here, a pool of its own).
	other := examplePool()
	defer other.Close()
	held, err := advisorylock.New(other, "migrations").Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer held.Unlock(ctx)

	m := advisorylock.New(pool, "migrations",
		advisorylock.WithTimeout(100*time.Millisecond),
		advisorylock.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))))
	ctx, job := tp.Tracer("example").Start(ctx, "migrate")
	_, err = advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) { return 0, nil })
	job.End()
	fmt.Println("WithLock:", err != nil)
	printTrace(spans.Ended())
	// Output:
	// WithLock: true
	// migrate
	//   advisorylock.acquire advisorylock.lock.mode=exclusive advisorylock.outcome=timeout error.type=timeout status=Error
}
