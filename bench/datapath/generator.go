package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

const (
	frameLen = 60 // 64 bytes on the wire with the FCS: Ethernet 14 + IPv4 20 + UDP 8 + 18
	batch    = 64 // frames per sendmmsg
)

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// generator sends prebuilt 64-byte UDP frames, one per flow, round-robin, from an AF_PACKET
// socket in the generator's namespace, in batches of sendmmsg. A veth that cannot take more
// (its peer's ring is full) makes the kernel drop the frame and report ENOBUFS: the
// generator then sends that frame again, so back-pressure slows it down instead of stopping
// it (which is what trafgen does).
type generator struct {
	fd     int
	frames []byte
	iovs   []unix.Iovec
	msgs   []mmsghdr
	cpu    int

	sent    atomic.Uint64 // frames the kernel accepted
	retries atomic.Uint64 // sendmmsg calls refused for back-pressure

	stop atomic.Bool
	wg   sync.WaitGroup
	err  error
}

// newGenerator opens the socket in ns on ifname and builds flows frames: sources spread over
// srcNet and ports, destinations over the services' VIPs, all to dstMAC.
func newGenerator(ns *netns.NS, ifname string, srcMAC, dstMAC net.HardwareAddr, flows, services, cpu int) (*generator, error) {
	flows = max(batch, (flows+batch-1)/batch*batch)
	g := &generator{fd: -1, cpu: cpu}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		g.fd = fd
		// Straight to the driver: no qdisc in the way of the veth's ENOBUFS.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20); err != nil {
			return err
		}
		// Protocol 0: the socket sends only; nothing received is queued to it.
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: 0, Ifindex: ifi.Index})
	}); err != nil {
		if g.fd >= 0 {
			_ = unix.Close(g.fd)
		}
		return nil, fmt.Errorf("generator socket on %s in %s: %w", ifname, ns.Name, err)
	}

	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // flow addresses, not secrets
	g.frames = make([]byte, flows*frameLen)
	g.iovs = make([]unix.Iovec, flows)
	g.msgs = make([]mmsghdr, flows)
	src := srcNet.Addr().As4()
	// Distinct flows: a repeated source (address, port) to the same service would be one flow.
	type flowID struct {
		host, port, svc int
	}
	seen := make(map[flowID]bool, flows)
	for i := range flows {
		f := g.frames[i*frameLen : (i+1)*frameLen]
		id := flowID{svc: i % services}
		for id.host == 0 || seen[id] {
			id.host, id.port = 1+rng.IntN(1<<16-2), 1024+rng.IntN(60000)
		}
		seen[id] = true
		s := [4]byte{src[0], src[1], byte(id.host >> 8 & 0xff), byte(id.host & 0xff)}
		buildFrame(f, srcMAC, dstMAC, s, vip(id.svc).As4(), uint16(id.port), svcPort) //nolint:gosec // < 61024
		g.iovs[i] = unix.Iovec{Base: &f[0], Len: frameLen}
		g.msgs[i].hdr.Iov = &g.iovs[i]
		g.msgs[i].hdr.Iovlen = 1
	}
	return g, nil
}

// buildFrame writes an Ethernet/IPv4/UDP frame of frameLen bytes into f. The UDP checksum is
// left 0 (none), which IPv4 allows.
func buildFrame(f []byte, srcMAC, dstMAC net.HardwareAddr, src, dst [4]byte, sport, dport uint16) {
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], frameLen-14)
	binary.BigEndian.PutUint16(ip[4:], 0)      // id
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], frameLen-34)
	binary.BigEndian.PutUint16(udp[6:], 0)
	for i := 42; i < frameLen; i++ {
		f[i] = byte(i)
	}
}

// start sends from a thread pinned to the generator's CPU until halt.
func (g *generator) start() {
	g.stop.Store(false)
	g.wg.Go(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var set unix.CPUSet
		set.Set(g.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			g.err = fmt.Errorf("pin the generator to CPU %d: %w", g.cpu, err)
			return
		}
		// Linux applies PRIO_PROCESS 0 to the calling thread only.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, niceness); err != nil {
			g.err = fmt.Errorf("renice the generator to %d: %w", niceness, err)
			return
		}
		n := len(g.msgs)
		off := 0
		for !g.stop.Load() {
			msgs := unsafe.Pointer(&g.msgs[off]) //nolint:gosec // G103: sendmmsg(2) takes the prebuilt mmsghdr array
			// Raw: the call never blocks (MSG_DONTWAIT), and leaving the scheduler out keeps
			// the runtime from waking another thread for each call.
			r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(g.fd), uintptr(msgs), batch, unix.MSG_DONTWAIT, 0, 0)
			switch {
			case errno == 0:
				g.sent.Add(uint64(r))
				off = (off + int(r)) % n
			case errors.Is(errno, unix.ENOBUFS), errors.Is(errno, unix.EAGAIN), errors.Is(errno, unix.EINTR):
				g.retries.Add(1)
			default:
				g.err = fmt.Errorf("sendmmsg: %w", errno)
				return
			}
			// A partial batch leaves off unaligned; realign so the batch stays in bounds.
			if off+batch > n {
				off = 0
			}
		}
	})
}

// halt stops sending and returns the first error the sender met.
func (g *generator) halt() error {
	g.stop.Store(true)
	g.wg.Wait()
	return g.err
}

func (g *generator) Close() error { return unix.Close(g.fd) }
