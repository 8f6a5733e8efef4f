package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// Get fetches http://addr/ from inside ns, as a client there would, and returns the body
// (a backend says "pod-X on node-Y"). Each call uses a new connection, so successive calls
// may reach different backends.
func Get(ctx context.Context, ns *netns.NS, addr string) (string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	return Fetch(ctx, ns, "http://"+netip.AddrPortFrom(a, 80).String()+"/", 4096)
}

// Fetch GETs url from inside ns on a new connection and returns at most limit bytes of
// the body; anything but 200 OK is an error.
func Fetch(ctx context.Context, ns *netns.NS, url string, limit int64) (string, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (c net.Conn, err error) {
			// The socket is created on a thread inside ns and belongs to ns for life.
			err = ns.Do(func() error {
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, address)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", url, ns.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s from %s: %s", url, ns.Name, resp.Status)
	}
	return string(body), nil
}
