//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package main

import (
	"os"
	"syscall"
	"unsafe"
)

// fromTerminal reports whether sig probably came from the terminal to the
// whole foreground process group, so the command, which is in withlock's
// group, got it too: SIGINT and SIGQUIT from the keyboard, SIGHUP from a
// hangup, while withlock's group is the terminal's foreground group. Sending
// such a signal again would deliver it twice (a program that takes a second
// Ctrl-C as "quit now" would skip its clean-up). Go does not expose the
// sender of a signal, so this is the best available guess; SIGTERM is always
// forwarded.
func fromTerminal(sig os.Signal) bool {
	switch sig {
	case syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP:
	default:
		return false
	}
	tty, err := os.Open("/dev/tty") // the controlling terminal, if any
	if err != nil {
		return false
	}
	defer tty.Close()
	var pgrp int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), uintptr(syscall.TIOCGPGRP), uintptr(unsafe.Pointer(&pgrp)))
	return errno == 0 && int(pgrp) == syscall.Getpgrp()
}
