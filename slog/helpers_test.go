package advisorylockslog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logOutput is what a JSON handler wrote, record by record, and lets a test
// await records written from other goroutines.
type logOutput struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at each write
}

func (o *logOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.changed)
	o.changed = make(chan struct{})
	return o.buf.Write(p)
}

// newLogger returns a logger writing JSON records of level at least level to
// the returned output.
func newLogger(level slog.Leveler) (*slog.Logger, *logOutput) {
	out := &logOutput{changed: make(chan struct{})}
	return slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level})), out
}

// lines returns the records written, one JSON text each.
func (o *logOutput) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lines []string
	for line := range strings.Lines(o.buf.String()) {
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	return lines
}

// record is a record as the JSON handler writes it, parsed.
type record map[string]any

// records returns the records written, parsed.
func (o *logOutput) records(t *testing.T) []record {
	t.Helper()
	var rs []record
	for _, line := range o.lines() {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// await waits until n records are written and returns them, or fails t after
// 10s.
func (o *logOutput) await(t *testing.T, n int) []record {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		o.mu.Lock()
		changed := o.changed
		o.mu.Unlock()
		if rs := o.records(t); len(rs) >= n {
			return rs
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d records after 10s; want %d", len(o.records(t)), n)
		}
	}
}

// one returns the only record written, or fails t.
func (o *logOutput) one(t *testing.T) record {
	t.Helper()
	rs := o.records(t)
	if len(rs) != 1 {
		t.Fatalf("%d records: %q; want 1", len(rs), o.lines())
	}
	return rs[0]
}

// str returns the string at path in r ("lock.key"), or "" when there is none.
func (r record) str(path string) string {
	s, _ := r.get(path).(string)
	return s
}

// duration returns the duration at key in r, as the JSON handler writes it
// (nanoseconds), failing t when there is none.
func (r record) duration(t *testing.T, key string) time.Duration {
	t.Helper()
	ns, ok := r.get(key).(float64)
	if !ok {
		t.Fatalf("record %v: %s = %v; want a duration", r, key, r.get(key))
	}
	return time.Duration(ns)
}

// has reports whether r has path.
func (r record) has(path string) bool { return r.get(path) != nil }

func (r record) get(path string) any {
	var v any = map[string]any(r)
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
