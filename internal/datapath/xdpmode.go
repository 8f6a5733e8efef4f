package datapath

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// XDPMode is where in the kernel the program runs on an interface: the speaker's
// --datapath-xdp-mode.
type XDPMode string

const (
	// XDPNative runs the program in the driver, on the receive ring, before the kernel
	// allocates a socket buffer: the fast path, for drivers that support it (most
	// 10G+ NICs, veth, virtio-net, bonds of such NICs).
	XDPNative XDPMode = "native"
	// XDPGeneric runs the program after the kernel built the socket buffer, on any
	// interface (bridges, VLANs, NICs without native XDP): the same program and maps,
	// slower by the buffer's cost. The program then sees packets after GRO: one that GRO
	// merged beyond the MTU is dropped when the program redirects it to another interface
	// (the kernel's generic redirect checks the length), so GRO must be off there.
	XDPGeneric XDPMode = "generic"
	// XDPAuto runs the program in native mode on every interface if all of them have
	// native XDP, else in generic mode on all (a program in native mode cannot redirect
	// packets to an interface without it), and reports what it chose (Attachments, the
	// log).
	XDPAuto XDPMode = "auto"
)

// ParseXDPMode checks a --datapath-xdp-mode value; empty means XDPAuto, the default.
// The error names the flag and the values it accepts.
func ParseXDPMode(s string) (XDPMode, error) {
	switch m := XDPMode(s); m {
	case "":
		return XDPAuto, nil
	case XDPNative, XDPGeneric, XDPAuto:
		return m, nil
	}
	return "", fmt.Errorf("--datapath-xdp-mode=%q: want %q, %q or %q", s, XDPNative, XDPGeneric, XDPAuto)
}

// Attachment is the program attached to one interface, as `ferrolb inspect` and the
// metric ferrolb_datapath_xdp_mode show it.
type Attachment struct {
	Interface string
	// Mode is XDPNative or XDPGeneric: what the attachment runs in, never XDPAuto.
	Mode XDPMode
}

// Attachments are the interfaces the program is attached to now, in the order of
// Config.Interface, Config.BackendInterfaces, with the mode each runs in; an interface
// that does not exist (deleted, not yet re-created) is not listed.
func (d *Datapath) Attachments() []Attachment {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Attachment(nil), d.attached...)
}

// attachXDP attaches the program to the interface name (index i) in d.xdpMode; with
// XDPAuto, native first and generic when the driver has no native XDP. It returns
// the mode it runs in. Only EOPNOTSUPP (no ndo_bpf in the driver) makes auto fall back:
// any other error (another program attached, no memory) is an error in generic mode too.
func (d *Datapath) attachXDP(name string, i int) (link.Link, XDPMode, error) {
	try := []XDPMode{d.xdpMode}
	if d.xdpMode == XDPAuto {
		try = []XDPMode{XDPNative, XDPGeneric}
	}
	var errs []error
	for _, m := range try {
		flags := link.XDPDriverMode
		if m == XDPGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.XdpLb, Interface: i, Flags: flags})
		if err == nil {
			switch {
			case len(errs) > 0:
				d.cfg.Log.Info("no native XDP on this interface: the XDP program runs in generic mode on every interface "+
					"(slower; turn GRO off on them, as packets GRO merges beyond the MTU are dropped)",
					"interface", name, "native", errs[0].Error())
			case m == XDPGeneric:
				d.cfg.Log.Info("XDP program attached in generic mode (turn GRO off: packets GRO merges beyond the MTU are dropped)",
					"interface", name, "mode", string(m))
			default:
				d.cfg.Log.Info("XDP program attached", "interface", name, "mode", string(m))
			}
			return l, m, nil
		}
		if m == XDPNative && errors.Is(err, unix.EOPNOTSUPP) {
			err = fmt.Errorf("%w: the driver has no native XDP (--datapath-xdp-mode=generic or auto runs the program in generic mode)", err)
		}
		errs = append(errs, fmt.Errorf("in %s mode: %w", m, err))
		if !errors.Is(err, unix.EOPNOTSUPP) {
			break
		}
	}
	msg := make([]string, len(errs))
	for k, e := range errs {
		msg[k] = e.Error()
	}
	return nil, "", fmt.Errorf("datapath: attach XDP to %s (ifindex %d) %s", name, i, strings.Join(msg, "; "))
}
