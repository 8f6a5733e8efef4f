// Package nsenter runs a function on a thread switched into another network namespace.
//
// Sockets, netlink handles and XDP attachments resolve interfaces in the namespace of the
// thread that creates them, and keep it for life; Go moves goroutines between threads, so
// the switch must pin one thread for the function's length and switch it back after.
package nsenter

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on the calling goroutine's thread, locked and switched into target, and
// switches the thread back when f returns. If it cannot switch back, the thread stays
// locked, so the runtime discards it when the goroutine exits and no other goroutine ever
// runs in the wrong namespace. When the thread is in target already, f runs without a
// switch: setns needs CAP_SYS_ADMIN, which a process that stays in its own namespace (the
// speaker in a pod) should not need.
func Do(target netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if orig.Equal(target) {
		defer runtime.UnlockOSThread()
		return f()
	}
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to the original namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}
