package speaker

import (
	"strings"
	"testing"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// The API server refuses field managers longer than 128 bytes; node names go to 253.
func TestFieldManager(t *testing.T) {
	if got := fieldManager("node-a"); got != "ferrolb-speaker/node-a" {
		t.Errorf("fieldManager(node-a) = %q", got)
	}
	long := strings.Repeat("n", 253)
	a, b := fieldManager(long), fieldManager(long[:252]+"m")
	if len(a) > 128 || len(b) > 128 || a == b || a != fieldManager(long) {
		t.Errorf("long names: %q and %q: want distinct, stable, at most 128 bytes", a, b)
	}
}

func TestCountOnly(t *testing.T) {
	e := v1.BGPSessionStatus{Node: "a", Session: "Established", BFD: "Up", Advertised: 3}
	more := e
	more.Advertised = 4
	down := more
	down.Session = "Active"
	if !countOnly(e, more) || countOnly(e, down) {
		t.Errorf("countOnly: %v for a count change, %v for a session change; want true, false", countOnly(e, more), countOnly(e, down))
	}
}
