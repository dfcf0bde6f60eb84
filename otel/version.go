package advisorylockotel

// ScopeName is the instrumentation scope name of the tracer and meter the
// Hook uses: this package's import path.
const ScopeName = "github.com/advisorylock/advisorylock/otel"

// Version is the version of this instrumentation, reported as the
// instrumentation scope's version.
const Version = "0.1.0"
