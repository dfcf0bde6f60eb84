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
// names can carry customer ids. An acquisition's span also records whether it
// was a TryLock (TryKey), its bound (TimeoutKey) and its outcome (OutcomeKey);
// a hold's whether the lock was lost (LostKey). A span's duration is the wait,
// or the time the lock was held. A wait that lost its connection before the
// grant and starts again (advisorylock.RetryHook) adds an event to its
// acquisition's span (RetryEventName), with which retry it is, the pause
// before it and the error.type of the lost connection (57P01 for a
// terminated backend).
//
// The attributes are set as a span ends, all in one call, from slices built
// once per lock and outcome, so that the SDK copies them once; only the
// timeout, when there is one, is set as the acquisition's span starts. A
// sampler therefore sees a span's name and kind, not its attributes.
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
//   - advisorylock.retries (counter): waits started again after their
//     connection ended before the grant.
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
// the Hook costs what its two spans and two histogram measurements cost the
// SDK: a locked section allocates, besides what the SDK allocates, one object
// of the Hook's, which carries both contexts it returns. The attributes and
// the metric attribute sets of a lock are built the first time it is used,
// and kept in a table of 256 locks per Hook (keyed by key, mode, scope and
// name), so that a program locking the same few names builds them once, and
// one naming a lock per customer keeps no more than 256. See
// BenchmarkWithLock and BenchmarkHooks in the package's tests, which measure
// the Hook against a reference hook emitting the least telemetry the SDK can.
//
// # Providers
//
// Like OpenTelemetry's contrib instrumentations, the Hook takes its providers
// from WithTracerProvider and WithMeterProvider and falls back to the global
// ones (otel.GetTracerProvider, otel.GetMeterProvider), which forward to
// providers registered later. Its instrumentation scope is ScopeName at
// Version.
package advisorylockotel // import "github.com/advisorylock/advisorylock/otel"
