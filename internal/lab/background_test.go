package lab

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// TestRunning: the pid file names a running process, or the lab is not running.
func TestRunning(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(pidFile(dir), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := Running(dir); ok {
		t.Error("no pid file: running")
	}
	write(strconv.Itoa(os.Getpid()) + "\n")
	if pid, ok := Running(dir); !ok || pid != os.Getpid() {
		t.Errorf("this process's pid: %d, %v", pid, ok)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	write(strconv.Itoa(gone.Process.Pid))
	if _, ok := Running(dir); ok {
		t.Error("an exited process's pid: running")
	}
	write("not a pid")
	if _, ok := Running(dir); ok {
		t.Error("garbage: running")
	}
}
