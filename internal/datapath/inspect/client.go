package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Client reads a speaker's datapath over its socket.
type Client struct {
	socket string
	http   *http.Client
	within func(func() error) error
}

// NewClient is a client of the speaker listening on socket (DefaultSocket when empty) in
// the calling process's network namespace.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	c := &Client{socket: socket, within: func(f func() error) error { return f() }}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (conn net.Conn, err error) {
		// An abstract socket is looked up in the network namespace of the thread that
		// creates the connecting socket.
		err = c.within(func() (err error) {
			var d net.Dialer
			conn, err = d.DialContext(ctx, "unix", c.socket)
			return err
		})
		return conn, err
	}}
	c.http = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	return c
}

// Within makes the client connect from a thread that do switches into another network
// namespace (the lab's nodes, tests), and returns it.
func (c *Client) Within(do func(func() error) error) *Client {
	c.within = do
	return c
}

// Overview is every programmed Service and the packets not forwarded.
func (c *Client) Overview(ctx context.Context) (Overview, error) {
	var o Overview
	return o, c.get(ctx, pathOverview, &o)
}

// Service is one programmed Service, with its flows per backend.
func (c *Client) Service(ctx context.Context, k ServiceKey) (Service, error) {
	var s Service
	return s, c.get(ctx, pathService+"?service="+url.QueryEscape(k.String()), &s)
}

// Conntrack is the conntrack tables' size and the flows q selects.
func (c *Client) Conntrack(ctx context.Context, q Query) (Conntrack, error) {
	var ct Conntrack
	return ct, c.get(ctx, pathConntrack+"?"+q.values(), &ct)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://speaker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("no speaker listens on %s in this network namespace: run this on the node (as root) "+
				"or in the speaker's pod (kubectl exec), where the speaker runs with --datapath=xdp", c.socket)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("speaker: %s", strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("speaker's answer: %w", err)
	}
	return nil
}
