package speaker

import (
	"context"
	"testing"

	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// startAnnouncer runs layer 2 responders whose sockets live in ns until the test ends, and
// returns them with a context that lives as long.
func startAnnouncer(t *testing.T, ns *netns.NS) (context.Context, *l2.Responders) {
	t.Helper()
	r := l2.NewResponders(l2.Config{Do: ns.Do})
	testrun.Background(t, "responders", r.Run)
	return t.Context(), r
}
