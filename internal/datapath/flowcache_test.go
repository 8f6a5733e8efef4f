package datapath

import (
	"net/netip"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// onCPU runs f on the given CPU (BPF_PROG_TEST_RUN runs the program on the caller's CPU),
// so that a test can choose which CPU's part of ct4_cache a packet uses.
func onCPU(t *testing.T, cpu int, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread ends with the goroutine: its affinity goes with it
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Errorf("pin to CPU %d: %v", cpu, err)
			return
		}
		f()
	}()
	<-done
	if t.Failed() {
		t.FailNow()
	}
}

// An IPv4 flow's entry may sit in several CPUs' ct4_cache at once. When a SYN on one CPU
// gives the flow's addresses and ports another backend (the client reused its port after
// the table changed), another CPU must not keep sending the flow's packets to the old one
// from its cache: ct_epoch empties the caches.
func TestFlowCacheAcrossCPUs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	d := newProgDatapath(t)
	svc := Service{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1, 2), TableSize: maglev.SmallSize}
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	flow := func(flags byte) []byte {
		return pkt{src: netip.AddrPortFrom(client4, 1000), dst: netip.AddrPortFrom(vip4, 80), proto: TCP,
			tcpFlags: flags}.build()
	}
	var first, second int
	onCPU(t, 0, func() {
		_, out := run(t, d, flow(tcpSYN))
		first = backendIndex(parse(out))
		_, out = run(t, d, flow(tcpACK)) // from CPU 0's cache
		if got := backendIndex(parse(out)); got != first {
			t.Errorf("ACK went to backend %d, SYN to %d", got, first)
		}
	})
	// Backends 1 and 2 leave (their flows drain), 3 and 4 take the new flows.
	svc.Backends = backends(vip4, 3, 4)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	onCPU(t, 1, func() {
		_, out := run(t, d, flow(tcpSYN)) // a new connection on the same addresses and ports
		second = backendIndex(parse(out))
	})
	if second == first || second < 3 {
		t.Fatalf("the new connection went to backend %d, the old one to %d", second, first)
	}
	onCPU(t, 0, func() {
		_, out := run(t, d, flow(tcpACK))
		if got := backendIndex(parse(out)); got != second {
			t.Errorf("CPU 0 sent the new connection's packet to backend %d, not %d (its SYN's)", got, second)
		}
	})
}

// Flows that collide in ct4_cache (more than a line's three) are still found in
// conntrack4: no established flow moves when the table changes, however many share a
// line. 30,000 UDP flows on one CPU fill some lines past three.
func TestFlowCacheCollisions(t *testing.T) {
	d := newProgDatapath(t)
	svc := Service{VIP: vip4, Port: 53, Protocol: UDP, Mode: DSR, Backends: backends(vip4, 1, 2), TableSize: maglev.SmallSize}
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	const flows = 30000
	flow := func(i int) []byte {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 14)})
		return pkt{src: netip.AddrPortFrom(src, uint16(1024+i&0x3fff)), dst: netip.AddrPortFrom(vip4, 53), proto: UDP,
			payload: make([]byte, 8)}.build()
	}
	first := make([]int, flows)
	onCPU(t, 0, func() {
		for i := range flows {
			_, out := run(t, d, flow(i))
			first[i] = backendIndex(parse(out))
		}
	})
	svc.Backends = backends(vip4, 1, 2, 3, 4, 5, 6, 7, 8)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	onCPU(t, 0, func() {
		for range 2 { // the second round after the first has churned the lines again
			for i := range flows {
				_, out := run(t, d, flow(i))
				if got := backendIndex(parse(out)); got != first[i] {
					t.Fatalf("flow %d moved from backend %d to %d", i, first[i], got)
				}
			}
		}
	})
}

// The flow cache's memory follows the conntrack size, not the number of CPUs: a node with
// many CPUs must not get 4 MB per CPU.
func TestCT4CacheLines(t *testing.T) {
	for _, c := range []struct {
		conntrack, cpus int
		want            uint32
	}{
		{262144, 2, 65536}, // 4 MB per CPU: what docs/performance.md measures
		{262144, 64, 2048}, // 128 KB per CPU, 8 MB in all
		{262144, 1, 65536}, // at most 4 MB per CPU
		{1000, 4, 1024},    // at least 64 KB per CPU
		{1 << 26, 512, 65536},
	} {
		if got := ct4CacheLines(c.conntrack, c.cpus); got != c.want {
			t.Errorf("ct4CacheLines(%d, %d) = %d, want %d", c.conntrack, c.cpus, got, c.want)
		}
	}
}
