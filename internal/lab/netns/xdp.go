package netns

import (
	"errors"
	"io"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// XDPPass attaches to ifname in n an XDP program that passes every packet, and returns
// what detaches it. A veth takes the frames that its peer's XDP program sends back out
// (XDP_TX, XDP_REDIRECT) only while it runs an XDP program itself; a NIC needs nothing.
// (Turning GRO on instead gives the veth a NAPI context, which should do, but in the lab
// on kernel 6.18 every SYN a node's XDP program sent back out was lost that way.)
func (n *NS) XDPPass(ifname string) (io.Closer, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
	if err != nil {
		return nil, err
	}
	var l link.Link
	err = n.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index})
		return err
	})
	if err != nil {
		return nil, errors.Join(err, prog.Close())
	}
	return xdpAttachment{l, prog}, nil
}

type xdpAttachment struct {
	link link.Link
	prog *ebpf.Program
}

func (a xdpAttachment) Close() error { return errors.Join(a.link.Close(), a.prog.Close()) }
