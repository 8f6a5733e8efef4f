package datapath

import "fmt"

// Kind is the speaker's choice of what carries Service traffic on a node: its --datapath
// flag. (Mode is another choice, made within XDP: how packets reach a backend.)
type Kind string

const (
	// None leaves Service traffic to kube-proxy (or the CNI): the speaker only announces,
	// as MetalLB does.
	None Kind = "none"
	// XDP programs this package's XDP load balancer on the node's interface.
	XDP Kind = "xdp"
)

// ParseKind checks a --datapath value; empty means None. The error names the flag and
// the values it accepts, so it can be shown to the user as it is.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case "":
		return None, nil
	case None, XDP:
		return k, nil
	}
	return "", fmt.Errorf("--datapath=%q: want %q or %q", s, None, XDP)
}
