package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A lab in the background (`ferrolb-lab up`) is a process of its own that runs Serve and
// outlives the command that started it. Its state directory holds what the commands share:
//
//	lab.pid     the process's pid, written by Up
//	datapath    the --datapath it runs with
//	lab.log     its output: the progress lines, then every log line of the controller
//	report.txt  its report, written by Serve once every Service answers
//	failed      why it did not start, written by Serve
//
// Down removes all but the log.

func pidFile(dir string) string { return filepath.Join(dir, "lab.pid") }

func datapathFile(dir string) string { return filepath.Join(dir, "datapath") }

func reportFile(dir string) string { return filepath.Join(dir, "report.txt") }

func failedFile(dir string) string { return filepath.Join(dir, "failed") }

// Running returns the pid of the background lab's process with its state in dir, if one
// runs.
func Running(dir string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return pid, true
}

// Serve runs the lab in the foreground until ctx ends, then stops it: what the process Up
// starts runs. It writes the report (ending with the command down, which removes the lab)
// to opts.Dir once every Service answers, or why the lab did not start.
func Serve(ctx context.Context, opts Options, down string) error {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	l, err := Start(ctx, opts)
	if err != nil {
		_ = os.WriteFile(failedFile(opts.Dir), []byte(err.Error()), 0o600)
		return err
	}
	if err := os.WriteFile(reportFile(opts.Dir), []byte(l.Report(ctx, down)), 0o600); err != nil {
		return errors.Join(err, l.Stop())
	}
	<-ctx.Done()
	logf("stopping")
	return l.Stop()
}

// Up starts the lab in the background with its state in dir, unless it runs already, and
// writes its progress and then its report to out. run is the command line that runs Serve
// with the same dir and datapath; Up starts it in its own session, so that it outlives Up
// and the terminal. A lab running with another datapath is an error; leftovers of one that
// did not stop cleanly are removed first (Down).
func Up(dir, datapath string, run []string, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces): run it with sudo")
	}
	if len(run) == 0 {
		return errors.New("lab.Up: no command to run the lab with")
	}
	if _, ok := Running(dir); ok {
		// A lab up with the other datapath would print a report that is not what was asked.
		if b, err := os.ReadFile(datapathFile(dir)); err == nil && string(b) != datapath {
			return fmt.Errorf("the lab is up with --datapath=%s: take the lab down first", b)
		}
		b, err := os.ReadFile(reportFile(dir))
		if err == nil {
			_, err = fmt.Fprint(out, "(already up)\n\n"+string(b))
			return err
		}
		return fmt.Errorf("a lab is starting or stuck (pid file %s): wait, or take the lab down", pidFile(dir))
	}
	if err := Down(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "lab.log")
	logf, err := os.Create(logPath) //nolint:gosec // the lab's own state directory
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(run[0], run[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(pidFile(dir), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(datapathFile(dir), []byte(datapath), 0o600); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Show its progress lines until the report (or a failure) appears.
	shown := 0
	for {
		if b, err := os.ReadFile(logPath); err == nil { //nolint:gosec // the lab's own state directory
			for _, line := range strings.Split(string(b), "\n")[shown:] {
				if strings.HasPrefix(line, "lab: ") {
					fmt.Fprintln(out, line)
				}
			}
			shown = max(shown, strings.Count(string(b), "\n"))
		}
		if b, err := os.ReadFile(reportFile(dir)); err == nil {
			_, err = fmt.Fprint(out, "\n"+string(b))
			return err
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(failedFile(dir))
			return fmt.Errorf("the lab stopped (%v): %s; see %s", err, b, logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Down stops the background lab's process (SIGTERM: it stops every process and deletes its
// namespaces; SIGKILL after 60 s) and then removes whatever is left of any lab: namespaces
// named Prefix* and the processes still inside them.
func Down(dir string) error {
	if pid, ok := Running(dir); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(60 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if b, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", name, err, b))
		}
	}
	for _, f := range []string{reportFile(dir), failedFile(dir), pidFile(dir), datapathFile(dir)} {
		_ = os.Remove(f)
	}
	return errors.Join(errs...)
}
