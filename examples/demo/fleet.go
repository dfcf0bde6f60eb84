package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a worker has to stop after SIGTERM before it is
// killed.
const stopGrace = 5 * time.Second

// A worker is a running worker process.
type worker struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser // held open: its end tells the worker the demo is gone
	done  chan struct{}  // closed when the process has exited and been reaped
	err   error          // Wait's, once done is closed
}

// A fleet starts workers and makes sure none outlives the demo.
type fleet struct {
	self string   // this program
	env  []string // the workers' environment

	mu      sync.Mutex
	workers []*worker
}

// start runs this program as a worker with role and name. Its stdout and
// stderr are the demo's, so its lines join the timeline.
func (f *fleet) start(role, name string) (*worker, error) {
	cmd := exec.Command(f.self, workerArg, role, name)
	cmd.Env = f.env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	w := &worker{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.done)
	}()
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.mu.Unlock()
	return w, nil
}

// find returns the worker called name, or nil.
func (f *fleet) find(name string) *worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.workers {
		if w.name == name {
			return w
		}
	}
	return nil
}

// kill kills the worker with SIGKILL, as a crash would, and reaps it.
func (w *worker) kill() {
	_ = w.cmd.Process.Kill() // fails only if it has exited already
	<-w.done
}

// stop asks the worker to stop (SIGTERM), kills it if it has not within
// stopGrace, and returns its error: nil when it stopped cleanly.
func (w *worker) stop() error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.kill()
		return fmt.Errorf("%s did not stop within %v and was killed", w.name, stopGrace)
	}
	if w.err != nil {
		return fmt.Errorf("%s: %w", w.name, w.err)
	}
	return nil
}

// wait waits for the worker to end by itself and returns its error.
func (w *worker) wait() error {
	<-w.done
	if w.err != nil {
		return fmt.Errorf("%s: %w", w.name, w.err)
	}
	return nil
}

// stopAll stops every worker still running, all at once, and waits for
// them. It is the demo's last word on workers, on every path.
func (f *fleet) stopAll() {
	f.mu.Lock()
	ws := f.workers
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		select {
		case <-w.done:
			continue
		default:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.stop()
		}()
	}
	wg.Wait()
}
