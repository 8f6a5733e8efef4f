package datapath

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Decap is the backend side of DSR: see AttachDecap.
type Decap struct {
	prog *ebpf.Program
	link link.Link
}

// AttachDecap attaches, to iface in the calling thread's network namespace, an XDP
// program that strips the outer IPIP / IP6IP6 header of every tunnel packet, unchecked,
// and passes the inner packet to the stack. Only the benchmark's backends use it (they
// count in tcx after it); nodes use the Decapsulator, which strips only the DSR packets
// for their endpoints. Close detaches it.
func AttachDecap(iface string) (*Decap, error) {
	const name = "xdp_decap"
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	spec, err := loadLb()
	if err != nil {
		return nil, err
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"prog"`
	}
	spec.Programs["prog"] = spec.Programs[name]
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("datapath: load %s: %w", name, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: objs.Prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
	if err != nil {
		_ = objs.Prog.Close()
		return nil, fmt.Errorf("datapath: attach %s to %s: %w", name, iface, err)
	}
	return &Decap{prog: objs.Prog, link: l}, nil
}

// Close detaches the program.
func (x *Decap) Close() error {
	return errors.Join(x.link.Close(), x.prog.Close())
}
