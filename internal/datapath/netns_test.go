package datapath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// lab is the namespace topology of the end-to-end tests:
//
//	client c0 (10.0.0.1, fd00::1) ---- n0 (10.0.0.2, fd00::2) node, XDP LB on n0 and n1
//	client c1 (10.1.0.100, fd01::100) -+   n1 (10.1.0.254, fd01::254)
//	                                   |    |
//	                      switch ns: bridge br0
//	                                   |
//	backends bk1..3 eth0 (10.1.0.1-3, fd01::1-3), VIPs on lo
//
// The client reaches the VIPs through the node over c0. Backends answer SNAT flows to the
// node (same subnet); their route back to the client's c0 subnet goes to c1, straight
// through the bridge, so DSR replies never touch the node.
type lab struct {
	client, node, sw *netns.NS
	backends         []*netns.NS
	d                *Datapath
	closers          []io.Closer
}

var (
	labVIP4 = netip.MustParseAddr("192.0.2.10")
	labVIP6 = netip.MustParseAddr("2001:db8::10")
)

func labBackend(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd01::%d", i))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.1.0.%d", i))
}

func newLab(t testing.TB) *lab {
	t.Helper()
	return newLabConfig(t, Config{})
}

// newLabConfig is newLab with cfg's settings besides the interfaces, SNAT addresses and
// next hop refresh, which are the lab's.
func newLabConfig(t testing.TB, cfg Config) *lab {
	t.Helper()
	return newLabOpts(t, labOpts{prefix: "dp", cfg: cfg})
}

// labOpts vary the lab: prefix starts its namespaces' names; with bridged, the node's
// client side is a bridge nb0 with n0 its port, holding n0's addresses, and the program is
// attached to nb0 (a bridge has no native XDP).
type labOpts struct {
	prefix  string
	cfg     Config
	bridged bool
}

func newLabOpts(t testing.TB, o labOpts) *lab {
	t.Helper()
	cfg := o.cfg
	l := &lab{client: netns.ForTest(t, o.prefix+"cl"), node: netns.ForTest(t, o.prefix+"nd"), sw: netns.ForTest(t, o.prefix+"sw")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range l.closers {
			_ = c.Close()
		}
	})
	must(netns.Veth(l.client, "c0", l.node, "n0"))
	must(netns.Veth(l.node, "n1", l.sw, "s-n"))
	must(netns.Veth(l.client, "c1", l.sw, "s-c"))
	l.sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	l.sw.MustRun(t, "ip", "link", "set", "br0", "up")
	for _, p := range []string{"s-n", "s-c"} {
		l.sw.MustRun(t, "ip", "link", "set", p, "master", "br0")
	}
	c, n := l.client, l.node
	// IPIP needs headroom: the client side MTU is lower than the node -> backend one.
	c.MustRun(t, "ip", "link", "set", "c0", "mtu", "1400")
	n.MustRun(t, "ip", "link", "set", "n0", "mtu", "1400")
	c.MustRun(t, "ip", "addr", "add", "10.0.0.1/24", "dev", "c0")
	c.MustRun(t, "ip", "addr", "add", "fd00::1/64", "dev", "c0", "nodad")
	c.MustRun(t, "ip", "addr", "add", "10.1.0.100/24", "dev", "c1")
	c.MustRun(t, "ip", "addr", "add", "fd01::100/64", "dev", "c1", "nodad")
	c.MustRun(t, "ip", "route", "add", labVIP4.String()+"/32", "via", "10.0.0.2")
	c.MustRun(t, "ip", "route", "add", labVIP6.String()+"/128", "via", "fd00::2")
	c.MustRun(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.c1.rp_filter=0", "net.ipv4.conf.c0.rp_filter=0")
	// Local TCP leaves partial checksums that XDP would rewrite incrementally, wrongly:
	// a NIC delivers full ones.
	c.MustRun(t, "ethtool", "-K", "c0", "tx", "off")
	c.MustRun(t, "ethtool", "-K", "c1", "tx", "off")
	ingress := "n0"
	if o.bridged {
		ingress = "nb0"
		n.MustRun(t, "ip", "link", "add", "nb0", "mtu", "1400", "type", "bridge")
		n.MustRun(t, "ip", "link", "set", "n0", "master", "nb0")
		n.MustRun(t, "ip", "link", "set", "nb0", "up")
	}
	n.MustRun(t, "ip", "addr", "add", "10.0.0.2/24", "dev", ingress)
	n.MustRun(t, "ip", "addr", "add", "fd00::2/64", "dev", ingress, "nodad")
	n.MustRun(t, "ip", "addr", "add", "10.1.0.254/24", "dev", "n1")
	n.MustRun(t, "ip", "addr", "add", "fd01::254/64", "dev", "n1", "nodad")
	for i := 1; i <= 3; i++ {
		b := netns.ForTest(t, fmt.Sprintf("dpb%d", i))
		l.backends = append(l.backends, b)
		port := fmt.Sprintf("s-b%d", i)
		must(netns.Veth(b, "eth0", l.sw, port))
		l.sw.MustRun(t, "ip", "link", "set", port, "master", "br0")
		b.MustRun(t, "ip", "link", "set", "lo", "up")
		b.MustRun(t, "ip", "addr", "add", labBackend(i, false).String()+"/24", "dev", "eth0")
		b.MustRun(t, "ip", "addr", "add", labBackend(i, true).String()+"/64", "dev", "eth0", "nodad")
		b.MustRun(t, "ip", "addr", "add", labVIP4.String()+"/32", "dev", "lo")
		b.MustRun(t, "ip", "addr", "add", labVIP6.String()+"/128", "dev", "lo")
		b.MustRun(t, "ip", "route", "add", "10.0.0.0/24", "via", "10.1.0.100")
		b.MustRun(t, "ip", "route", "add", "fd00::/64", "via", "fd01::100")
		b.MustRun(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0")
		b.MustRun(t, "ethtool", "-K", "eth0", "tx", "off")
		name := fmt.Sprintf("bk%d", i)
		for _, addr := range []string{"[::]:8080", "[::]:80"} {
			must(b.Do(func() error {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return err
				}
				l.closers = append(l.closers, ln)
				go serve(ln, name)
				return nil
			}))
		}
		// UDP: answer each datagram with the backend's name, on 8053 (SNAT) and on the
		// VIPs' 53 (DSR: bound to the VIP so that answers leave from it, as a wildcard
		// socket would answer from eth0's address).
		for _, addr := range []string{"[::]:8053", labVIP4.String() + ":53", "[" + labVIP6.String() + "]:53"} {
			must(b.Do(func() error {
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					return err
				}
				l.closers = append(l.closers, pc)
				go func() {
					buf := make([]byte, 2048)
					for {
						_, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						_, _ = pc.WriteTo([]byte(name), from)
					}
				}()
				return nil
			}))
		}
		// DSR: strip the outer header of what the node sends for the VIPs' ports, as a
		// backend node's speaker has its decapsulator do.
		l.decap(t, b, i)
	}
	// XDP_TX / XDP_REDIRECT into a veth needs an XDP program on its peer.
	l.xdpPass(t, l.client, "c0")
	l.xdpPass(t, l.sw, "s-n")
	must(n.Do(func() (err error) {
		cfg.Interface, cfg.BackendInterfaces = ingress, []string{"n1"}
		cfg.SNATv4, cfg.SNATv6 = netip.MustParseAddr("10.1.0.254"), netip.MustParseAddr("fd01::254")
		cfg.NexthopRefresh = 100 * time.Millisecond
		l.d, err = New(cfg)
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return l
}

// xdpPass attaches a pass-everything XDP program to iface in ns until the test ends.
// decap runs a Decapsulator on backend i's eth0 that strips the DSR packets sent to it for
// the lab's VIPs on the ports the tests use, until the test ends.
func (l *lab) decap(t testing.TB, b *netns.NS, i int) {
	t.Helper()
	var pairs []DecapPair
	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		for _, port := range []uint16{80, 8080, 53, 8053} {
			for _, proto := range []Protocol{TCP, UDP} {
				pairs = append(pairs, DecapPair{Backend: labBackend(i, vip.Is6()), VIP: vip, Port: port, Protocol: proto})
			}
		}
	}
	var x *Decapsulator
	if err := b.Do(func() (err error) {
		x, err = NewDecapsulator(DecapConfig{Interfaces: []string{"eth0"}, AttachError: func(err error) { t.Error(err) }})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := x.SetPairs(pairs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func (l *lab) xdpPass(t testing.TB, ns *netns.NS, iface string) {
	t.Helper()
	x, err := ns.XDPPass(iface)
	if err != nil {
		t.Fatal(err)
	}
	l.closers = append(l.closers, x)
}

// serve says which backend it is, then echoes lines; "big N" answers N bytes.
func serve(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if _, err := fmt.Fprintf(c, "%s\n", name); err != nil {
				return
			}
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				var n int
				if _, err := fmt.Sscanf(line, "big %d", &n); err == nil {
					if _, err := c.Write(make([]byte, n)); err != nil {
						return
					}
					continue
				}
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
	}
}

// waitNexthops waits until Run has resolved every backend's next hop: before that, new
// flows go to the stack.
func (l *lab) waitNexthops(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.d.mu.Lock()
		ok := true
		for _, s := range l.d.services {
			for _, b := range s.backends {
				ok = ok && (b.nh.valid() || b.nh.stack)
			}
		}
		l.d.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("backend next hops not resolved")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type conn struct {
	net.Conn
	r       *bufio.Reader
	backend string
}

func (l *lab) dial(t *testing.T, vip netip.Addr, port uint16) *conn {
	t.Helper()
	c, err := l.tryDial(vip, port, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tryDial connects from the client to vip:port and reads the backend's banner (its name).
func (l *lab) tryDial(vip netip.Addr, port uint16, timeout time.Duration) (*conn, error) {
	var c net.Conn
	err := l.client.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip, port).String(), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("banner: %w", err)
	}
	return &conn{Conn: c, r: r, backend: strings.TrimSpace(name)}, nil
}

func (c *conn) echo(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != msg {
		t.Fatalf("echo from %s: %q, %v", c.backend, got, err)
	}
}

// connectEach opens connections to vip:80 (60 at most), each echoing a line, until it
// holds one to each of n backends, and returns them by backend; the others are closed.
func (l *lab) connectEach(t *testing.T, vip netip.Addr, n int) map[string]*conn {
	t.Helper()
	seen := map[string]*conn{}
	for i := 0; i < 60 && len(seen) < n; i++ {
		c := l.dial(t, vip, 80)
		c.echo(t, "hello")
		if seen[c.backend] == nil {
			seen[c.backend] = c
		} else {
			_ = c.Close()
		}
	}
	return seen
}

// caseName names a subtest by the address's family, and by mode when given: "v4",
// "v6-dsr".
func caseName(vip netip.Addr, mode ...Mode) string {
	name := map[bool]string{false: "v4", true: "v6"}[vip.Is6()]
	for _, m := range mode {
		name += map[Mode]string{SNAT: "-snat", DSR: "-dsr"}[m]
	}
	return name
}

// udpService is a UDP Service on vip:port with bk1 to bk3 on bport.
func udpService(vip netip.Addr, mode Mode, port, bport uint16) []Service {
	var bs []Backend
	for i := 1; i <= 3; i++ {
		bs = append(bs, Backend{Addr: labBackend(i, vip.Is6()), Port: bport})
	}
	return []Service{{VIP: vip, Port: port, Protocol: UDP, Mode: mode, Backends: bs}}
}

func labServices(vip netip.Addr, mode Mode, idx ...int) []Service {
	port, bport := uint16(80), uint16(8080)
	if mode == DSR {
		bport = 80 // no port translation: the backend answers the client directly
	}
	var bs []Backend
	for _, i := range idx {
		bs = append(bs, Backend{Addr: labBackend(i, vip.Is6()), Port: bport})
	}
	return []Service{{VIP: vip, Port: port, Protocol: TCP, Mode: mode, Backends: bs}}
}

func TestLabSNAT(t *testing.T) {
	l := newLab(t)
	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		t.Run(caseName(vip), func(t *testing.T) {
			if err := l.d.SetServices(labServices(vip, SNAT, 1, 2, 3)); err != nil {
				t.Fatal(err)
			}
			l.waitNexthops(t)
			seen := l.connectEach(t, vip, 3)
			if len(seen) != 3 {
				t.Fatalf("reached %d backends: %v", len(seen), seen)
			}
			// Remove bk2: every established connection, bk2's included, keeps working;
			// new connections avoid bk2.
			if err := l.d.SetServices(labServices(vip, SNAT, 1, 3)); err != nil {
				t.Fatal(err)
			}
			for _, c := range seen {
				c.echo(t, "still there")
			}
			for i := 0; i < 20; i++ {
				c := l.dial(t, vip, 80)
				if c.backend == "bk2" {
					t.Fatal("new connection reached the removed backend")
				}
				_ = c.Close()
			}
			cs, err := l.d.Counters()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.VIP == vip && !c.Backend.IsValid() && c.Packets == 0 {
					t.Fatalf("no packets counted: %+v", cs)
				}
			}
			if err := l.d.SetServices(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLabUDP sends datagrams from many source ports to a UDP VIP and checks that every
// backend answers, through the node (SNAT) and straight (DSR).
func TestLabUDP(t *testing.T) {
	l := newLab(t)
	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		for _, mode := range []Mode{SNAT, DSR} {
			t.Run(caseName(vip, mode), func(t *testing.T) {
				if err := l.d.SetServices(udpService(vip, mode, 53, 8053)); err != nil {
					t.Fatal(err)
				}
				l.waitNexthops(t)
				seen := map[string]bool{}
				for i := 0; i < 30 && len(seen) < 3; i++ {
					var c net.Conn
					if err := l.client.Do(func() (err error) {
						c, err = net.Dial("udp", netip.AddrPortFrom(vip, 53).String())
						return err
					}); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 64)
					var n int
					var err error
					for try := 0; try < 3; try++ { // UDP: the first datagram may meet an unresolved neighbour
						if _, err = c.Write([]byte("who")); err != nil {
							break
						}
						_ = c.SetReadDeadline(time.Now().Add(time.Second))
						if n, err = c.Read(buf); err == nil {
							break
						}
					}
					_ = c.Close()
					if err != nil {
						t.Fatalf("datagram %d: %v", i, err)
					}
					seen[string(buf[:n])] = true
				}
				if len(seen) != 3 {
					t.Fatalf("answers from %v", seen)
				}
			})
		}
	}
	if err := l.d.SetServices(nil); err != nil {
		t.Fatal(err)
	}
}

func linkStats(t *testing.T, ns *netns.NS, name string) *netlink.LinkStatistics {
	t.Helper()
	var st *netlink.LinkStatistics
	err := ns.Do(func() error {
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		st = lk.Attrs().Statistics
		if st == nil {
			return errors.New("no statistics")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLabDSR(t *testing.T) {
	l := newLab(t)
	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		t.Run(caseName(vip), func(t *testing.T) {
			if err := l.d.SetServices(labServices(vip, DSR, 1, 2, 3)); err != nil {
				t.Fatal(err)
			}
			l.waitNexthops(t)
			seen := map[string]bool{}
			var conns []*conn
			for i := 0; i < 60 && len(seen) < 3; i++ {
				c := l.dial(t, vip, 80)
				seen[c.backend] = true
				conns = append(conns, c)
			}
			if len(seen) != 3 {
				t.Fatalf("reached %v", seen)
			}
			// Replies bypass the node: 1 MB per backend arrives on the client's c1 while
			// the node's n0 sends nearly nothing.
			const size = 1 << 20
			n0 := linkStats(t, l.node, "n0").TxBytes
			c1 := linkStats(t, l.client, "c1").RxBytes
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, c := range conns[len(conns)-3:] {
				wg.Go(func() {
					if _, err := io.WriteString(c, fmt.Sprintf("big %d\n", size)); err != nil {
						t.Error(err)
						return
					}
					n, err := io.ReadFull(c.r, make([]byte, size))
					mu.Lock()
					defer mu.Unlock()
					if err != nil || n != size {
						t.Errorf("read %d: %v", n, err)
					}
				})
			}
			wg.Wait()
			dn0 := linkStats(t, l.node, "n0").TxBytes - n0
			dc1 := linkStats(t, l.client, "c1").RxBytes - c1
			t.Logf("node n0 sent %d bytes, client c1 received %d bytes", dn0, dc1)
			if dc1 < 3*size || dn0 > 64<<10 {
				t.Fatalf("replies did not bypass the node: n0 tx %d, c1 rx %d", dn0, dc1)
			}
			for _, c := range conns {
				_ = c.Close()
			}
			if err := l.d.SetServices(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLabLocalEndpoint gives a Service an endpoint in a pod on the node itself, behind a
// veth the program is not attached to, next to two backends across the switch. The
// pod's share of flows goes to the stack, where an nftables DNAT rule stands in for
// kube-proxy; the rest is balanced in XDP. Every connection works, and a connection to
// the pod stays with the stack after the pod leaves the Service.
func TestLabLocalEndpoint(t *testing.T) {
	l := newLab(t)
	pod := netns.ForTest(t, "dppod")
	if err := netns.Veth(l.node, "pod0", pod, "eth0"); err != nil {
		t.Fatal(err)
	}
	n := l.node
	n.MustRun(t, "ip", "addr", "add", "10.2.0.1/24", "dev", "pod0")
	n.MustRun(t, "ip", "addr", "add", "fd02::1/64", "dev", "pod0", "nodad")
	n.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	pod.MustRun(t, "ip", "link", "set", "lo", "up")
	pod.MustRun(t, "ip", "addr", "add", "10.2.0.2/24", "dev", "eth0")
	pod.MustRun(t, "ip", "addr", "add", "fd02::2/64", "dev", "eth0", "nodad")
	pod.MustRun(t, "ip", "route", "add", "default", "via", "10.2.0.1")
	pod.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd02::1")
	ln, err := func() (ln net.Listener, err error) {
		err = pod.Do(func() error {
			ln, err = net.Listen("tcp", "[::]:8080")
			return err
		})
		return ln, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	l.closers = append(l.closers, ln)
	go serve(ln, "pod")
	// kube-proxy's part, reduced to the pod: what XDP passes is DNATed by the stack.
	n.MustRun(t, "nft", "add table inet kp; "+
		"add chain inet kp pre { type nat hook prerouting priority -100; }; "+
		"add rule inet kp pre ip daddr "+labVIP4.String()+" tcp dport 80 dnat ip to 10.2.0.2:8080; "+
		"add rule inet kp pre ip6 daddr "+labVIP6.String()+" tcp dport 80 dnat ip6 to [fd02::2]:8080")
	podAddr := map[bool]netip.Addr{false: netip.MustParseAddr("10.2.0.2"), true: netip.MustParseAddr("fd02::2")}

	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		t.Run(caseName(vip), func(t *testing.T) {
			svcs := labServices(vip, SNAT, 1, 2)
			svcs[0].Backends = append(svcs[0].Backends, Backend{Addr: podAddr[vip.Is6()], Port: 8080})
			if err := l.d.SetServices(svcs); err != nil {
				t.Fatal(err)
			}
			l.waitNexthops(t)
			seen := l.connectEach(t, vip, 3)
			if len(seen) != 3 {
				t.Fatalf("reached %d of bk1, bk2, pod: %v", len(seen), seen)
			}
			// Only the XDP-balanced backends are counted: the pod's packets were passed.
			cs, err := l.d.Counters()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.Backend.Addr() == podAddr[vip.Is6()] && c.Packets != 0 {
					t.Errorf("pod counted %d packets in XDP", c.Packets)
				}
			}
			// The pod leaves the Service: its connection stays with the stack (conntrack
			// remembers), the others stay in XDP, and new connections avoid the pod.
			if err := l.d.SetServices(labServices(vip, SNAT, 1, 2)); err != nil {
				t.Fatal(err)
			}
			for _, c := range seen {
				c.echo(t, "still there")
			}
			for i := 0; i < 20; i++ {
				c := l.dial(t, vip, 80)
				if c.backend == "pod" {
					t.Fatal("new connection reached the removed pod")
				}
				_ = c.Close()
			}
			for _, c := range seen {
				_ = c.Close()
			}
			if err := l.d.SetServices(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLabInterfaceRecreated: the node's backend-side interface is deleted and created again
// under its name (a new index and MAC), as when a bond or VLAN is rebuilt. Run attaches the
// program to the new one and the backends' next hops follow it, so new connections reach
// every backend again. The node neither routes the VIP nor forwards, so only the program
// can carry them.
func TestLabInterfaceRecreated(t *testing.T) {
	l := newLab(t)
	if err := l.d.SetServices(labServices(labVIP4, SNAT, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	l.waitNexthops(t)
	if seen := l.connectEach(t, labVIP4, 3); len(seen) != 3 {
		t.Fatalf("reached %d backends before: %v", len(seen), seen)
	}

	l.recreateN1(t)
	l.reachAll(t, labVIP4, "after n1 was re-created")
}

// recreateN1 deletes the node's backend side n1 and creates it again, with its address.
func (l *lab) recreateN1(t *testing.T) {
	t.Helper()
	l.node.MustRun(t, "ip", "link", "del", "n1")
	if err := netns.Veth(l.node, "n1", l.sw, "s-n"); err != nil {
		t.Fatal(err)
	}
	l.sw.MustRun(t, "ip", "link", "set", "s-n", "master", "br0")
	l.node.MustRun(t, "ip", "addr", "add", "10.1.0.254/24", "dev", "n1")
	l.xdpPass(t, l.sw, "s-n")
}

// reachAll opens connections to vip:80 for up to 15 s, failed ones included (the program
// may not be attached yet), until each of bk1..bk3 answered one.
func (l *lab) reachAll(t *testing.T, vip netip.Addr, when string) {
	t.Helper()
	seen := map[string]bool{}
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for len(seen) < 3 && time.Now().Before(deadline) {
		c, err := l.tryDial(vip, 80, 500*time.Millisecond)
		if last = err; err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		seen[c.backend] = true
		_ = c.Close()
	}
	if len(seen) != 3 {
		t.Fatalf("%s, new connections reached %v (last error %v), want bk1, bk2 and bk3", when, seen, last)
	}
}

// TestLabSNATHalfOpen: with two SNAT ports, two real handshakes that stop after the
// SYN-ACK (nftables in the client drops its ACKs on those source ports) hold both ports,
// but only for SNATIdleOther after the backend's last SYN-ACK (the backend retransmits
// it once here): then a real connection gets one of them, and its handshake, with the
// kernel's own sequence numbers, makes its flow established.
func TestLabSNATHalfOpen(t *testing.T) {
	l := newLabConfig(t, Config{SNATPortMin: 61000, SNATPortMax: 61001, SNATIdleOther: 2 * time.Second})
	l.backends[0].MustRun(t, "sysctl", "-qw", "net.ipv4.tcp_synack_retries=1")
	l.client.MustRun(t, "nft", "add table inet halfopen; "+
		"add chain inet halfopen out { type filter hook output priority 0; }; "+
		"add rule inet halfopen out tcp sport 40000-40009 tcp flags & ack == ack drop")
	for i, vip := range []netip.Addr{labVIP4, labVIP6} {
		t.Run(caseName(vip), func(t *testing.T) {
			if err := l.d.SetServices(labServices(vip, SNAT, 1)); err != nil {
				t.Fatal(err)
			}
			l.waitNexthops(t)
			be := labBackend(1, vip.Is6())
			for _, port := range []int{40000 + 2*i, 40001 + 2*i} {
				// The client's side completes: its connect returns once the SYN-ACK is in.
				err := l.client.Do(func() error {
					d := net.Dialer{LocalAddr: &net.TCPAddr{Port: port}, Timeout: 3 * time.Second}
					c, err := d.Dial("tcp", netip.AddrPortFrom(vip, 80).String())
					if err == nil {
						t.Cleanup(func() { _ = c.Close() })
					}
					return err
				})
				if err != nil {
					t.Fatalf("half-open connection from port %d: %v", port, err)
				}
			}
			flows := snatFlows(t, l.d, be)
			if len(flows) != 2 {
				t.Fatalf("SNAT ports held: %v, want the two half-open flows'", flows)
			}
			for port, v := range flows {
				if v.Synack != 1 || v.Established != 0 {
					t.Fatalf("half-open flow from port %d: SYN-ACK seen %d, established %d", port, v.Synack, v.Established)
				}
			}
			// New connections fail (their SYNs are dropped) until the ports come back.
			var c *conn
			var err error
			start := time.Now()
			for c == nil && time.Since(start) < 20*time.Second {
				c, err = l.tryDial(vip, 80, time.Second)
			}
			if c == nil {
				t.Fatalf("no connection in %v, the half-open flows still hold the ports: %v", time.Since(start), err)
			}
			t.Logf("connected after %v", time.Since(start).Round(time.Millisecond))
			defer c.Close()
			c.echo(t, "hello")
			cport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
			if v, ok := snatFlows(t, l.d, be)[cport]; !ok || v.Established != 1 {
				t.Fatalf("the connection's flow (port %d): %+v, want established", cport, v)
			}
		})
	}
	if err := l.d.SetServices(nil); err != nil {
		t.Fatal(err)
	}
}

// snatFlows are the snat_rev entries of backend be's TCP SNAT ports, by client port.
func snatFlows(t *testing.T, d *Datapath, be netip.Addr) map[uint16]lbRevVal {
	t.Helper()
	out := map[uint16]lbRevVal{}
	var k lbRevKey
	var v lbRevVal
	it := d.objs.SnatRev.Iterate()
	for it.Next(&k, &v) {
		if k.Baddr.W == addrWords(be) && k.Family == family(be) && k.Proto == uint8(TCP) {
			out[htons(v.Cport)] = v
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
