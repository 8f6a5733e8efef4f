package recovery

import "testing"

func TestRecoverCountsAndContinues(t *testing.T) {
	var g Guard
	handle := func(b []byte) byte {
		defer g.Recover()
		return b[1] // panics on a short packet, as the NDP parser once did
	}
	for range 3 {
		handle([]byte{1})
	}
	if got := handle([]byte{1, 2}); got != 2 {
		t.Fatalf("after panics the handler returned %d, want 2", got)
	}
	if got := g.Panics(); got != 3 {
		t.Fatalf("Panics = %d, want 3", got)
	}
}
