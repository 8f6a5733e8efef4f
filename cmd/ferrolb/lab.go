package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/lab"
)

func newLabCommand() *cobra.Command {
	dir := "/run/ferrolb-lab"
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "The whole system on this machine, in network namespaces (root)",
		Long: `"ferrolb lab up" builds (or reuses) a real kube-apiserver and etcd, creates network
namespaces for a router running FRR, three nodes with a backend pod each, a client on the
nodes' LAN and one behind the router, and runs the controller, a speaker and kube-proxy per
node. It applies sample pools, an L2Policy, BGP peers and two Services, shows real requests
reaching them over layer 2 and over BGP, and prints how to poke at it. "ferrolb lab down"
removes every namespace and process. Run it from a checkout of FerroLB ("make lab").
With --datapath=xdp the speakers run FerroLB's XDP load balancer on each node's eth0 and
carry the Services' traffic themselves (SNAT); kube-proxy still runs beside them.`,
	}
	var datapath string
	cmd.PersistentFlags().StringVar(&dir, "dir", dir, "state directory: kubeconfig, logs, report")
	cmd.PersistentFlags().StringVar(&datapath, "datapath", "none", "the speakers' --datapath: none (kube-proxy carries Service traffic) or xdp")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab in the background and print its report (safe to run twice)",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return labUp(dir, datapath) },
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab: every process, namespace and link it made",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return labDown(dir) },
	}
	run := &cobra.Command{
		Use:    "run",
		Short:  "Run the lab in the foreground until interrupted (what up starts)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, _ := os.Executable()
			l, err := lab.Start(cmd.Context(), lab.Options{Dir: dir, Datapath: datapath, Logf: func(f string, a ...any) { fmt.Printf("lab: "+f+"\n", a...) }})
			if err != nil {
				_ = os.WriteFile(filepath.Join(dir, "failed"), []byte(err.Error()), 0o600)
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(l.Report(cmd.Context(), self)), 0o600); err != nil {
				return errors.Join(err, l.Stop())
			}
			<-cmd.Context().Done()
			fmt.Println("lab: stopping")
			return l.Stop()
		},
	}
	cmd.AddCommand(up, down, run)
	return cmd
}

func pidFile(dir string) string { return filepath.Join(dir, "lab.pid") }

// datapathFile holds the running lab's --datapath.
func datapathFile(dir string) string { return filepath.Join(dir, "datapath") }

// running returns the pid of the lab's process if one runs.
func running(dir string) (int, bool) {
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

func labUp(dir, datapath string) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces): sudo ferrolb lab up")
	}
	report := filepath.Join(dir, "report.txt")
	if _, ok := running(dir); ok {
		// A lab up with the other datapath would print a report that is not what was asked.
		if b, err := os.ReadFile(datapathFile(dir)); err == nil && string(b) != datapath {
			return fmt.Errorf("the lab is up with --datapath=%s: run lab down first", b)
		}
		b, err := os.ReadFile(report) //nolint:gosec // the lab's own state directory
		if err == nil {
			fmt.Print("(already up)\n\n" + string(b))
			return nil
		}
		return fmt.Errorf("a lab is starting or stuck (pid file %s): wait, or run lab down", pidFile(dir))
	}
	// Leftovers of a lab that did not stop cleanly go first.
	if err := labDown(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "lab.log")
	logf, err := os.Create(logPath) //nolint:gosec // the lab's own state directory
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "lab", "run", "--dir", dir, "--datapath", datapath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it outlives this command and the terminal.
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
					fmt.Println(line)
				}
			}
			shown = max(shown, strings.Count(string(b), "\n"))
		}
		if b, err := os.ReadFile(report); err == nil { //nolint:gosec // the lab's own state directory
			fmt.Print("\n" + string(b))
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "failed")) //nolint:gosec // the lab's own state directory
			return fmt.Errorf("the lab stopped (%v): %s; see %s", err, b, logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// labDown stops the lab's process and then removes whatever is left of any lab: namespaces
// named flb-* and the processes still inside them.
func labDown(dir string) error {
	if pid, ok := running(dir); ok {
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
		if !strings.HasPrefix(name, lab.Prefix) {
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
	for _, f := range []string{"report.txt", "failed", "lab.pid", "datapath"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	return errors.Join(errs...)
}
