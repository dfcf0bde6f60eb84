package pgtest

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Children are started with a parent-death signal (Pdeathsig) so that a test
// binary that dies, even by SIGKILL, takes its servers with it. The kernel
// sends that signal when the *thread* that forked the child exits, not the
// process, and the Go runtime may end an OS thread while the process lives on
// (it does so when a goroutine that called runtime.LockOSThread returns
// without unlocking). A child forked from an arbitrary goroutine could thus
// be signalled in the middle of a test run.
//
// So every child is forked from one goroutine that locks itself to its OS
// thread and never returns: that thread lives exactly as long as the process,
// and the signal fires when, and only when, the test binary goes away. The
// goroutine is created on first use and is the harness's only permanent one;
// Main tells the leak check to ignore it.

// launchRequest asks the launcher goroutine to start cmd.
type launchRequest struct {
	cmd  *exec.Cmd
	errc chan<- error
}

var launcher struct {
	once sync.Once
	reqs chan launchRequest
}

// launch starts cmd from the launcher thread.
func launch(cmd *exec.Cmd) error {
	launcher.once.Do(func() {
		launcher.reqs = make(chan launchRequest)
		go launchLoop(launcher.reqs)
	})
	errc := make(chan error, 1)
	launcher.reqs <- launchRequest{cmd: cmd, errc: errc}
	return <-errc
}

// launchLoop serves launch requests forever on a locked OS thread.
func launchLoop(reqs <-chan launchRequest) {
	runtime.LockOSThread() // never unlocked: the thread must outlive every child
	for r := range reqs {
		r.errc <- r.cmd.Start()
	}
}

// runChild runs a short-lived program (initdb, pg_basebackup) to completion.
// cmd should come from exec.CommandContext so that ctx bounds it.
func runChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.WaitDelay = 5 * time.Second
	if err := launch(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// process is a running postmaster.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// startServerProcess starts cmd in its own process group, with SIGQUIT (an
// immediate shutdown) as its parent-death signal, and reaps it in the
// background.
func startServerProcess(cmd *exec.Cmd) (*process, error) {
	return startProcess(cmd, syscall.SIGQUIT)
}

// startProcess starts cmd in its own process group, with deathSig as its
// parent-death signal, and reaps it in the background.
func startProcess(cmd *exec.Cmd, deathSig syscall.Signal) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own group keeps a terminal's Ctrl-C from reaching the child
	// directly (the harness shuts it down) and lets the last resort kill a
	// postmaster and its backends together.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = deathSig
	if err := launch(cmd); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Shutdown escalation: PostgreSQL reads SIGINT as a fast shutdown (end all
// sessions, checkpoint, exit) and SIGQUIT as an immediate one.
const (
	fastShutdownWait      = 10 * time.Second
	immediateShutdownWait = 5 * time.Second
)

// errKilled reports a server that had to be killed.
var errKilled = errors.New("server did not shut down and was killed")

// shutdown stops the process with a fast shutdown, escalating to an
// immediate one and then to SIGKILL for its whole process group, and returns
// once it has exited.
func (p *process) shutdown() error {
	if p.signalAndWait(syscall.SIGINT, fastShutdownWait) {
		return nil
	}
	if p.signalAndWait(syscall.SIGQUIT, immediateShutdownWait) {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return errKilled
}

// signalAndWait sends sig and reports whether the process exited within wait.
func (p *process) signalAndWait(sig syscall.Signal, wait time.Duration) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(sig) // fails only when it has already exited
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}
