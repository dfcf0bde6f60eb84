package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// A timeline writes the demo's story to stdout, one line per event:
//
//	2.315s  clock-2       became the clock
//
// The demo and its workers, separate processes, share stdout and the start
// time, so their lines interleave into one timeline. Each line is one write,
// which the system keeps whole, and lines come in the order they were written:
// an event that causes another (a clock dies, another takes over) is printed
// before it.
type timeline struct {
	t0    time.Time
	label string
}

// labelWidth pads labels so the events line up.
const labelWidth = 12

// say writes one event.
func (tl timeline) say(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs  %-*s  %s\n", time.Since(tl.t0).Seconds(), labelWidth, tl.label, fmt.Sprintf(format, args...))
	os.Stdout.WriteString(line)
}

// section writes a heading.
func (tl timeline) section(title string) {
	os.Stdout.WriteString("\n== " + title + "\n")
}

// encodeT0 and decodeT0 pass the start time to workers.
func encodeT0(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func decodeT0(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad start time %q: %w", s, err)
	}
	return time.Unix(0, n), nil
}
