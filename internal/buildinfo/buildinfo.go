// Package buildinfo says which build of FerroLB is running: its version, the commit it was
// built from and the Go version, as `ferrolb version` prints them, and as the metric
// ferrolb_build_info{version,commit,goversion} = 1 that the controller and the speaker serve.
package buildinfo

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Info describes the running binary.
type Info struct {
	// Version is the one a release build sets (cmd/ferrolb's main.version), else "dev".
	Version string
	// Commit is the revision the Go toolchain recorded (vcs.revision), with "-dirty" when the
	// tree had changes; "" when none was recorded (go build -buildvcs=false, go run, tests).
	Commit string
	// GoVersion is the Go release the binary was built with.
	GoVersion string
}

// Read returns what the Go toolchain recorded in the binary, with version as the version.
func Read(version string) Info {
	info := Info{Version: version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.GoVersion = bi.GoVersion
	var dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if info.Commit != "" {
		info.Commit += dirty
	}
	return info
}

// String is the line `ferrolb version` prints.
func (i Info) String() string {
	if i.Commit == "" {
		return fmt.Sprintf("ferrolb %s (%s)", i.Version, i.GoVersion)
	}
	return fmt.Sprintf("ferrolb %s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}

// Name is the metric's name.
const Name = "ferrolb_build_info"

// Collector returns the collector of ferrolb_build_info: one series, always 1, whose labels
// describe the build (one series per process: bounded).
func Collector(i Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: Name,
		Help: "Always 1; its labels are the version, commit and Go version of the running ferrolb, as `ferrolb version` prints them.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"commit":    i.Commit,
			"goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// Register adds ferrolb_build_info for version to controller-runtime's registry, which
// both roles serve on /metrics. Registering the same build again is a no-op; any other
// failure (another collector of that name with other labels) is a bug and panics, as
// prometheus.MustRegister does.
func Register(version string) {
	err := metrics.Registry.Register(Collector(Read(version)))
	var are prometheus.AlreadyRegisteredError
	if err != nil && !errors.As(err, &are) {
		panic(fmt.Sprintf("register %s: %v", Name, err))
	}
}
