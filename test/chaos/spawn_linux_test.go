//go:build linux

package chaos

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Children die with the test process, even when it dies without running
// its cleanups (a test timeout's panic, a SIGKILL): the kernel sends them
// SIGKILL when their parent goes (PR_SET_PDEATHSIG). "Parent" is the
// thread that forked them, so every child is forked by one goroutine
// locked to a thread that lives until every test is over (Go issue 27505).

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

type spawnCall struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawns    chan spawnCall
)

// spawn starts cmd from the spawner's thread.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawnCall)
		go spawner(spawns)
	})
	c := spawnCall{cmd: cmd, err: make(chan error, 1)}
	spawns <- c
	return <-c.err
}

func spawner(calls <-chan spawnCall) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	for c := range calls {
		c.err <- c.cmd.Start()
	}
}

// stopSpawner ends the spawner once every child is gone.
func stopSpawner() {
	if spawns != nil {
		close(spawns)
	}
}
