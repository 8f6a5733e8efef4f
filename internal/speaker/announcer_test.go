package speaker

import (
	"context"
	"testing"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// startAnnouncer runs an announcer whose sockets live in ns until the test ends, and returns
// it with a context that lives as long.
func startAnnouncer(t *testing.T, ns *netns.NS) (context.Context, *announcer) {
	t.Helper()
	ann := newAnnouncer(ns.Do)
	testrun.Background(t, "announcer", ann.Start)
	return t.Context(), ann
}
