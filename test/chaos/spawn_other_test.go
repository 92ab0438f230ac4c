//go:build unix && !linux

package chaos

import (
	"os/exec"
	"syscall"
)

// Without PR_SET_PDEATHSIG, children outlive a test process that dies
// without running its cleanups; normally the cleanups kill them.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func spawn(cmd *exec.Cmd) error { return cmd.Start() }

func stopSpawner() {}
