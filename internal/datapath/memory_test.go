package datapath

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// memlock is the kernel's account of a map's memory (what bpftool map show prints as
// memlock), from the map's fdinfo.
func memlock(t *testing.T, m *ebpf.Map) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no memlock in the fdinfo of map %v", m)
	return 0
}

// mapMemory is every map's memlock by name, and the Maglev table of service slot 0 as
// "maglev_inner" when there is one.
func mapMemory(t *testing.T, d *Datapath) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	v := reflect.ValueOf(d.objs.lbMaps)
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out[v.Type().Field(i).Tag.Get("ebpf")] = memlock(t, m)
		}
	}
	var id ebpf.MapID
	if err := d.objs.MaglevOuter.Lookup(uint32(0), &id); err == nil {
		inner, err := ebpf.NewMapFromID(id)
		if err != nil {
			t.Fatal(err)
		}
		defer inner.Close()
		out["maglev_inner"] = memlock(t, inner)
	}
	return out
}

// TestMapMemory measures the kernel memory of the datapath's maps at several conntrack
// and Maglev table sizes, as docs/performance.md reports it (go test -run TestMapMemory
// -v ./internal/datapath prints the table), and checks what the documentation promises:
// a conntrack table, and the SNAT port table with it, costs a fixed amount per entry, and
// a Maglev table 8 bytes per entry.
func TestMapMemory(t *testing.T) {
	ns := netns.ForTest(t, "flx-m")
	type row struct {
		conntrack, table int
		mem              map[string]int64
	}
	var rows []row
	for _, sz := range []struct{ conntrack, table int }{
		{65536, 251}, {DefaultConntrackSize, 65537}, {1 << 20, 131071}, {4 << 20, 1021},
	} {
		var d *Datapath
		if err := ns.Do(func() (err error) {
			d, err = New(Config{Interface: "lo", ConntrackSize: sz.conntrack, MaglevTableSize: sz.table})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		svc := Service{VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Protocol: TCP,
			Backends: []Backend{{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}}}
		if err := d.SetServices([]Service{svc}); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row{sz.conntrack, sz.table, mapMemory(t, d)})
		_ = d.Close()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%10s %8s %14s %14s %14s %14s %14s\n", "conntrack", "maglev", "conntrack4", "conntrack6", "snat_rev", "maglev_inner", "others")
	for _, r := range rows {
		var others int64
		for name, n := range r.mem {
			switch name {
			case "conntrack4", "conntrack6", "snat_rev", "maglev_inner":
			default:
				others += n
			}
		}
		fmt.Fprintf(&b, "%10d %8d %14d %14d %14d %14d %14d\n", r.conntrack, r.table, r.mem["conntrack4"], r.mem["conntrack6"],
			r.mem["snat_rev"], r.mem["maglev_inner"], others)
	}
	t.Logf("memlock in bytes (bpftool map show), %d CPUs:\n%s", ncpus(t), b.String())

	// Per entry, between the smallest and the largest conntrack size: the same within a
	// byte from one pair of sizes to another (the hash buckets double with the entries).
	first, last := rows[0], rows[len(rows)-1]
	for _, m := range []string{"conntrack4", "conntrack6", "snat_rev"} {
		per := float64(last.mem[m]-first.mem[m]) / float64(last.conntrack-first.conntrack)
		mid := float64(rows[2].mem[m]-first.mem[m]) / float64(rows[2].conntrack-first.conntrack)
		t.Logf("%s: %.1f bytes per entry", m, per)
		if per-mid > 1 || mid-per > 1 {
			t.Errorf("%s: %.1f bytes per entry from %d to %d entries, %.1f to %d", m, per, first.conntrack, last.conntrack, mid, rows[2].conntrack)
		}
	}
	for _, r := range rows {
		if per := float64(r.mem["maglev_inner"]) / float64(r.table); per < 8 || per > 8+2048/float64(r.table) {
			t.Errorf("Maglev table of %d entries: %d bytes, want 8 per entry and at most 2 KiB more", r.table, r.mem["maglev_inner"])
		}
	}
}

// ncpus is the number of possible CPUs, which per-CPU maps are sized by.
func ncpus(t *testing.T) int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
