package speaker

import (
	"context"
	"testing"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// startAnnouncer runs an announcer whose sockets live in ns until the test ends, and returns
// it with the context it runs under.
func startAnnouncer(t *testing.T, ns *netns.NS) (context.Context, *announcer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ann := newAnnouncer(ns.Do)
	done := make(chan error, 1)
	go func() { done <- ann.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ctx, ann
}
