//go:build !linux

package main

import "syscall"

// childSysProcAttr returns nil: only Linux has a parent-death signal, so
// elsewhere a command outlives a withlock that is killed outright.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
