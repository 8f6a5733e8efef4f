package bgp

import (
	"fmt"
	"testing"
	"time"

	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

const waitTimeout = 30 * time.Second

// frr is the router of a test: FRR in a namespace, with the test's polling helpers.
type frr struct {
	*labfrr.Router
	t testing.TB
}

type (
	route    = labfrr.Route
	neighbor = labfrr.Neighbor
)

func startFRR(t testing.TB, ns *netns.NS, conf string) *frr {
	t.Helper()
	return startFRRWith(t, ns, conf, labfrr.Options{})
}

func startFRRWith(t testing.TB, ns *netns.NS, conf string, opts labfrr.Options) *frr {
	t.Helper()
	return &frr{Router: labfrr.ForTestWith(t, ns, conf, opts), t: t}
}

// waitFor polls cond until it holds, failing the test after waitTimeout with cond's last
// explanation.
func (f *frr) waitFor(what string, cond func() (bool, string)) {
	f.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not after %v: %s", what, waitTimeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *frr) waitEstablished(addr string) neighbor {
	f.t.Helper()
	var n neighbor
	f.waitFor("session with "+addr+" established", func() (bool, string) {
		var err error
		n, err = f.Neighbor(addr)
		return err == nil && n.BGPState == "Established", fmt.Sprintf("%+v %v", n, err)
	})
	return n
}
