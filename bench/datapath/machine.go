package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockPath serialises runs of this benchmark on the machine: two at once share the CPUs and
// both measure nonsense.
const lockPath = "/run/ferrolb-bench-datapath.lock"

// exclusive takes the machine-wide lock, waiting (and saying so) while another run holds it.
func exclusive(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	said := false
	for unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		if !said {
			fmt.Printf("waiting for another run of this benchmark to finish (%s)\n", lockPath)
			said = true
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	// Builds older than the lock: wait (a while) for their namespaces to go.
	for deadline := time.Now().Add(3 * time.Minute); ; {
		others := otherRuns()
		if len(others) == 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("warning: other runs are still going (namespaces %s): the figures below are skewed\n", strings.Join(others, ", "))
			break
		}
		if !said {
			fmt.Printf("waiting for other runs of this benchmark to finish (namespaces %s)\n", strings.Join(others, ", "))
			said = true
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return func() { _ = f.Close() }, nil
}

// otherRuns lists the generator namespaces of other live processes running this benchmark.
func otherRuns() []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var others []string
	for _, e := range entries {
		var pid, n int
		if _, err := fmt.Sscanf(e.Name(), "dpb-gen-%d-%d", &pid, &n); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			others = append(others, e.Name())
		}
	}
	return others
}

// buildRevision, set with -ldflags "-X main.buildRevision=...", names the commit of a build
// made outside a git checkout (from git archive).
var buildRevision string

// revision is the commit this program (and internal/datapath with it) was built from.
func revision() string {
	if buildRevision != "" {
		return "commit " + buildRevision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, modified := "unknown commit", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = "commit " + s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			modified = " with uncommitted changes"
		}
	}
	return rev + modified
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "CPU ?"
	}
	for l := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "CPU ?"
}
