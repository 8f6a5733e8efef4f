package buildinfo_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferrolb/ferrolb/internal/buildinfo"
)

// TestRegister: both roles' /metrics (controller-runtime's registry) carry one
// ferrolb_build_info series, 1, labelled as Read describes the binary; registering again
// (a process that runs a role twice) neither panics nor adds a series.
func TestRegister(t *testing.T) {
	buildinfo.Register("v1.2.3")
	buildinfo.Register("v1.2.3")
	i := buildinfo.Read("v1.2.3")
	want := fmt.Sprintf(`# HELP ferrolb_build_info Always 1; its labels are the version, commit and Go version of the running ferrolb, as `+"`ferrolb version`"+` prints them.
# TYPE ferrolb_build_info gauge
ferrolb_build_info{commit=%q,goversion=%q,version="v1.2.3"} 1
`, i.Commit, i.GoVersion)
	if err := testutil.GatherAndCompare(metrics.Registry, strings.NewReader(want), buildinfo.Name); err != nil {
		t.Error(err)
	}
}

// TestString: the line `ferrolb version` prints, with and without a recorded commit.
func TestString(t *testing.T) {
	for _, c := range []struct {
		info buildinfo.Info
		want string
	}{
		{buildinfo.Info{Version: "dev", GoVersion: "go1.26.8"}, "ferrolb dev (go1.26.8)"},
		{buildinfo.Info{Version: "v0.1.0", Commit: "abc123-dirty", GoVersion: "go1.26.8"}, "ferrolb v0.1.0 (commit abc123-dirty, go1.26.8)"},
	} {
		if got := c.info.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.info, got, c.want)
		}
	}
	// A test binary records no VCS settings; the Go version is always known.
	if got := buildinfo.Read("dev"); got.Version != "dev" || !strings.HasPrefix(got.GoVersion, "go") || got.GoVersion != runtime.Version() {
		t.Errorf("Read(dev) = %+v, want version dev and Go %s", got, runtime.Version())
	}
}
