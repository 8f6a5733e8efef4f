package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Get fetches url from inside the namespace, as a client there would, on a new connection
// (so successive calls may reach different backends), and returns at most limit bytes of
// the body; anything but 200 OK is an error. ctx bounds the whole request.
func (n *NS) Get(ctx context.Context, url string, limit int64) (string, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (c net.Conn, err error) {
			// The socket is created on a thread inside the namespace and belongs to it for life.
			err = n.Do(func() error {
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, address)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %w", url, n.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s from %s: %s", url, n.Name, resp.Status)
	}
	return string(body), nil
}
