package embedded

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// privateFiles makes every file the process creates from now on private
// to its user (umask 077).
func privateFiles() { syscall.Umask(0o077) }
