// Package advisorylockotel traces and measures advisorylock's locks with
// OpenTelemetry: the wait for a lock, the section run under it, and locks
// lost while held.
//
// The package lives in the directory otel of the module and is imported as
// github.com/advisorylock/advisorylock/otel; its name is advisorylockotel, so
// that it does not clash with go.opentelemetry.io/otel in the code that uses
// both. Only programs that import it compile OpenTelemetry: the core package
// knows nothing of it.
//
// NewHook returns a Hook to pass to advisorylock.WithHooks:
//
//	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))
//	m := advisorylock.New(pool, "nightly-report", advisorylock.WithHooks(hook))
//
// # Spans
//
// Each acquisition, successful or not, is a span named advisorylock.acquire
// (AcquireSpanName), of kind client: it covers the wait in the server and the
// round trips, which a pgx tracer on the pool shows as its children. A lock
// acquired is then held under a span named advisorylock.hold (HoldSpanName), of
// kind internal, from the moment Lock returns until the lock is released or
// lost. Both are children of the span in the caller's context; when there is
// none, each starts a trace, and the hold span links to the acquire span.
// WithLock runs its function in the hold span's context, so the function's own
// spans (its queries, its calls) show under the lock, and so does the release.
//
// Span names never carry a lock's name or key; attributes do: the key
// (LockKeyKey), the mode, the scope, db.system.name = postgresql, and, per
// WithLockName, the lock's name, its hash (the default) or nothing, since
// names can carry customer ids. An acquisition's span records its outcome
// (OutcomeKey) and wait (WaitKey); a hold's records how long the lock was held
// (HeldKey) and whether it was lost (LostKey).
//
// A busy TryLock is an answer, not a failure: its span keeps an unset status,
// as an acquired lock's does. A timeout, a cancellation, any other failure to
// acquire, a lost lock and a failed release set the span's status to error,
// with error.type set to "timeout", "canceled", "lock_lost", the SQLSTATE of a
// server error (also in db.response.status_code) or "_OTHER". The status
// description is the error's text with the lock's name replaced by its key
// unless WithLockName(LockNameFull) is given. The pool's connection string is
// never recorded: a failure to connect is described by the driver's error,
// which names the host, the user and the database, never the password.
//
// # Metrics
//
//   - advisorylock.acquire.duration (histogram, s): the wait of each
//     acquisition, with its mode, scope, outcome and whether it was a TryLock.
//   - advisorylock.acquisitions (counter): acquisitions, with the same
//     attributes.
//   - advisorylock.hold.duration (histogram, s): how long locks were held.
//   - advisorylock.held (up-down counter): locks held now.
//   - advisorylock.lost (counter): locks lost while held.
//
// The histograms' buckets (DurationBuckets) run from 100µs to an hour. Metric
// attributes are low-cardinality: mode, scope, and for acquisitions the
// outcome and try; the lock's name is added only with WithMetricLockName.
// The two counts (acquisitions, held) are kept in atomic counters and
// reported when the metrics are collected, through asynchronous instruments,
// so that the lock path pays almost nothing for them; with
// WithMetricLockName they are synchronous instruments. The histograms get the
// span's context, so an SDK keeping exemplars links a slow wait to its trace.
//
// # Cost
//
// With no hook, the lock path calls none. With the no-op providers of the
// trace/noop and metric/noop packages, the Hook does nothing. With the SDK,
// the Hook costs about what its two spans and two histogram measurements cost
// the SDK: its own work is the context it returns, and formatting the key and
// the name, which it does only for a span that records (not for one its
// sampler dropped). See BenchmarkWithLock in the package's tests.
//
// # Providers
//
// Like OpenTelemetry's contrib instrumentations, the Hook takes its providers
// from WithTracerProvider and WithMeterProvider and falls back to the global
// ones (otel.GetTracerProvider, otel.GetMeterProvider), which forward to
// providers registered later. Its instrumentation scope is ScopeName at
// Version.
package advisorylockotel // import "github.com/advisorylock/advisorylock/otel"
