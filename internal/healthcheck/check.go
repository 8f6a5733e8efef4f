// Package healthcheck probes load-balancer backends from the node, besides what Kubernetes
// says of them (EndpointSlice readiness is the kubelet's view from the backend's own node;
// an active check sees what a client of this node's load balancer would: the path through
// the network, and a backend that accepts but no longer answers).
//
// A Checker probes each Target it is given (TCP connect, or an HTTP GET) every interval,
// from the node's network namespace, with a bounded number of probes in flight. A target
// turns unhealthy after UnhealthyThreshold consecutive failures and healthy again after
// HealthyThreshold consecutive successes; a new target counts as healthy until it has
// failed (fail open: a check must never take a backend out before it has said anything).
// Probes run at a fixed rate and each ends within its timeout, shorter than the interval,
// so a backend that stops answering is unhealthy within UnhealthyThreshold intervals and
// a timeout of the moment it stopped: with the default threshold of 2, within 3 intervals.
package healthcheck

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Kind is how a backend is probed.
type Kind uint8

const (
	// TCP: the backend accepts a TCP connection (closed at once).
	TCP Kind = iota + 1
	// HTTP: the backend answers an HTTP/1.1 GET with a status from 200 to 399 (as the
	// kubelet's httpGet probe; redirects are not followed).
	HTTP
)

func (k Kind) String() string {
	switch k {
	case TCP:
		return "tcp"
	case HTTP:
		return "http"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind reads "tcp" or "http".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "http":
		return HTTP, nil
	}
	return 0, fmt.Errorf("%q is not a kind of check: tcp or http", s)
}

// Defaults and bounds of a Check. The defaults take a backend that stops answering out
// within 2 intervals and a timeout (12 s), inside the 3 intervals promised; the bounds keep
// a typo from probing every backend a thousand times a second or never.
const (
	DefaultInterval           = 5 * time.Second
	DefaultTimeout            = 2 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 2

	MinInterval  = time.Second
	MaxInterval  = 5 * time.Minute
	MinTimeout   = 100 * time.Millisecond
	MaxThreshold = 10
	// MaxPathLen bounds an HTTP check's path.
	MaxPathLen = 1024
)

// Check is how a backend is probed.
type Check struct {
	Kind Kind
	// Path is an HTTP check's request target (path and query), "/" when empty.
	Path               string
	Interval, Timeout  time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
}

// Default is a check of kind k with the default interval, timeout and thresholds.
func Default(k Kind) Check {
	return Check{Kind: k, Interval: DefaultInterval, Timeout: DefaultTimeout,
		HealthyThreshold: DefaultHealthyThreshold, UnhealthyThreshold: DefaultUnhealthyThreshold}
}

// Validate says what is wrong with c, naming the field.
func (c Check) Validate() error {
	var errs []error
	if c.Kind != TCP && c.Kind != HTTP {
		errs = append(errs, fmt.Errorf("kind: %v is not tcp or http", c.Kind))
	}
	if err := ValidatePath(c.Path); err != nil {
		errs = append(errs, fmt.Errorf("path: %w", err))
	}
	if c.Interval < MinInterval || c.Interval > MaxInterval {
		errs = append(errs, fmt.Errorf("interval: %v is not within %v and %v", c.Interval, MinInterval, MaxInterval))
	}
	if c.Timeout < MinTimeout || c.Timeout >= c.Interval {
		errs = append(errs, fmt.Errorf("timeout: %v is not within %v and the interval (%v), excluded", c.Timeout, MinTimeout, c.Interval))
	}
	for _, th := range []struct {
		name string
		n    int
	}{{"healthy threshold", c.HealthyThreshold}, {"unhealthy threshold", c.UnhealthyThreshold}} {
		if th.n < 1 || th.n > MaxThreshold {
			errs = append(errs, fmt.Errorf("%s: %d is not within 1 and %d", th.name, th.n, MaxThreshold))
		}
	}
	return errors.Join(errs...)
}

// ValidatePath accepts an HTTP request target: empty (then "/"), or starting with "/", at
// most MaxPathLen bytes of printable ASCII without spaces. Anything else could not be sent
// as it is (a space or a line break would end the request line and let the path write
// headers of its own).
func ValidatePath(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("%d bytes, more than %d", len(p), MaxPathLen)
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q does not start with /", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return fmt.Errorf("%q has a space, a control character or a non-ASCII byte at %d (percent-encode it)", p, i)
		}
	}
	return nil
}

// Target is one backend under one check: Addr is where the probe goes (the backend's
// address, and its port or the check's own). Targets are comparable: two Services whose
// backend and check are the same share one probe.
type Target struct {
	Addr  netip.AddrPort
	Check Check
}
