package lab

import (
	"context"
	"net/netip"
	"time"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// Get fetches http://addr/ from inside ns, as a client there would, and returns the body
// (a backend says "pod-X on node-Y"). Each call uses a new connection, so successive calls
// may reach different backends.
func Get(ctx context.Context, ns *netns.NS, addr string) (string, error) {
	return GetPort(ctx, ns, addr, 80)
}

// GetPort is Get on another port.
func GetPort(ctx context.Context, ns *netns.NS, addr string, port uint16) (string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return ns.Get(ctx, "http://"+netip.AddrPortFrom(a, port).String()+"/", 4096)
}
