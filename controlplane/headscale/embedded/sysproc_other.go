//go:build !linux

package embedded

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

func privateFiles() {}
