//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import "os"

// fromTerminal reports false: every signal is forwarded.
func fromTerminal(os.Signal) bool { return false }
