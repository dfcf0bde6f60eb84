package main

import "syscall"

// childSysProcAttr makes the command die with withlock: if withlock is
// killed outright (SIGKILL, the OOM killer), its database session ends and the
// lock with it, so the command must not go on unprotected. The kernel sends
// the signal when the thread that started the command exits; main keeps that
// thread for the life of the process.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
