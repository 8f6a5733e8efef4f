package nsenter_test

import (
	"errors"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ferrolb/ferrolb/internal/nsenter"
)

// Do returns f's error and leaves the thread where it was. (Switching into another
// namespace for real is tested through internal/lab/netns, whose NS.Do is this Do.)
func TestDoReturnsErrorAndComesBack(t *testing.T) {
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	sentinel := errors.New("from f")
	ran := false
	if err := nsenter.Do(before, func() error { ran = true; return sentinel }); !errors.Is(err, sentinel) || !ran {
		t.Fatalf("Do: %v, ran %v; want f's error", err, ran)
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Error("the thread was left in another namespace")
	}
}
