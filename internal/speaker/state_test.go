package speaker

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

var addrCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// The layer 2 election from the state file's entries: only the elected live node answers,
// on the interfaces of its entries that are up.
func TestL2Want(t *testing.T) {
	vip, vip2 := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")
	// Which of a and b the hash picks for vip when both are alive.
	both, _ := l2.Announcer(vip, []string{"a", "b"})
	other := map[string]string{"a": "b", "b": "a"}[both]
	tests := []struct {
		name    string
		entries []l2Entry
		me      string
		alive   []string
		usable  []string
		want    map[netip.Addr][]string
	}{
		{name: "sole candidate, alive", me: "a", alive: []string{"a"}, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a"}, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{vip: {"eth0"}}},
		{name: "not alive yet (warming up): nothing", me: "a", alive: nil, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a"}, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{}},
		{name: "the elected of two live nodes answers", me: both, alive: []string{"a", "b"}, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a", "b"}, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{vip: {"eth0"}}},
		{name: "the other of two live nodes does not", me: other, alive: []string{"a", "b"}, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a", "b"}, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{}},
		{name: "the elected one dead: the other answers", me: other, alive: []string{other}, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a", "b"}, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{vip: {"eth0"}}},
		{name: "a live node that is no candidate does not count", me: "a", alive: []string{"a", "b", "c"}, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a"}, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{vip: {"eth0"}}},
		{name: "interface without carrier: not on it", me: "a", alive: []string{"a"}, usable: []string{"eth1"},
			entries: []l2Entry{{Addr: vip, Candidates: []string{"a"}, Interfaces: []string{"eth0", "eth1"}}},
			want:    map[netip.Addr][]string{vip: {"eth1"}}},
		{name: "no candidates (Local without endpoints)", me: "a", alive: []string{"a"}, usable: []string{"eth0"},
			entries: []l2Entry{{Addr: vip, Interfaces: []string{"eth0"}}},
			want:    map[netip.Addr][]string{}},
		{name: "two policies: interfaces add up, once each", me: "a", alive: []string{"a"}, usable: []string{"eth0", "eth1"},
			entries: []l2Entry{
				{Addr: vip, Candidates: []string{"a"}, Interfaces: []string{"eth0"}},
				{Addr: vip, Candidates: []string{"a", "b"}, Interfaces: []string{"eth0", "eth1"}},
				{Addr: vip2, Candidates: []string{"a"}, Interfaces: []string{"eth1"}},
			},
			want: map[netip.Addr][]string{vip: {"eth0", "eth1"}, vip2: {"eth1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := l2Want(tt.entries, tt.me, tt.alive, tt.usable)
			if diff := cmp.Diff(tt.want, got, addrCmp); diff != "" {
				t.Errorf("l2Want (-want +got):\n%s", diff)
			}
		})
	}
}

func TestL2Down(t *testing.T) {
	tests := []struct {
		name   string
		st     l2State
		usable []string
		want   bool
	}{
		{"no policies", l2State{}, nil, false},
		{"a selected interface is up", l2State{Policies: 1, Interfaces: []string{"eth0", "eth1"}}, []string{"eth1"}, false},
		{"none of them is up", l2State{Policies: 1, Interfaces: []string{"eth0"}}, []string{"eth1"}, true},
		{"policies that select nothing here", l2State{Policies: 2}, []string{"eth0"}, true},
	}
	for _, tt := range tests {
		if got := tt.st.down(tt.usable); got != tt.want {
			t.Errorf("%s: down = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fullState uses every field, in no particular order.
func fullState() state {
	lp := uint32(200)
	return state{
		Node: "node-a",
		L2: l2State{
			Peers: []member.Peer{
				{Name: "node-c", Addr: netip.MustParseAddrPort("192.168.50.13:7946")},
				{Name: "node-b", Addr: netip.MustParseAddrPort("[fd00:50::12]:7946")},
			},
			Policies:   1,
			Interfaces: []string{"eth1", "eth0"},
			Entries: []l2Entry{
				{Addr: netip.MustParseAddr("2001:db8::100"), Candidates: []string{"node-c", "node-a"}, Interfaces: []string{"eth0"}},
				{Addr: netip.MustParseAddr("192.168.50.200"), Candidates: []string{"node-b", "node-a", "node-c"}, Interfaces: []string{"eth0", "eth1"}},
			},
		},
		BGP: bgpState{
			RouterID: netip.MustParseAddr("192.168.50.11"), ASN: 64513,
			Peers: []bgp.Peer{
				{Address: netip.MustParseAddr("fd00:50::1"), ASN: 64512, LocalASN: 64513, GracefulRestart: 120 * time.Second},
				{Address: netip.MustParseAddr("192.168.50.1"), ASN: 64512, Password: "s3cret", HoldTime: 9 * time.Second,
					BFD: bgp.BFD{Enabled: true, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}},
			},
			Paths: []bgp.Path{
				{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Communities: []uint32{64513<<16 | 100}, LocalPref: &lp,
					Peers: []netip.Addr{netip.MustParseAddr("192.168.50.1")}},
				{Prefix: netip.MustParsePrefix("2001:db8:100::10/128"), NextHop: netip.MustParseAddr("fd00:50::11"),
					LargeCommunities: [][3]uint32{{64513, 1, 2}}},
			},
		},
		DatapathInterface: "eth0",
	}
}

func TestStateRoundTrip(t *testing.T) {
	in := fullState()
	b, err := in.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if in.L2.Peers[0].Name != "node-c" {
		t.Error("marshal sorted the caller's lists")
	}
	got, err := parseState(b, "node-a")
	if err != nil {
		t.Fatalf("parseState(%s): %v", b, err)
	}
	want := fullState()
	want.Version = stateVersion
	want.normalize()
	if diff := cmp.Diff(want, got, addrCmp, cmp.AllowUnexported(state{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// Lists in another order marshal to the same bytes: the file is rewritten only when
	// something changed.
	shuffled := fullState()
	shuffled.L2.Entries[0], shuffled.L2.Entries[1] = shuffled.L2.Entries[1], shuffled.L2.Entries[0]
	shuffled.BGP.Peers[0], shuffled.BGP.Peers[1] = shuffled.BGP.Peers[1], shuffled.BGP.Peers[0]
	if b2, _ := shuffled.marshal(); string(b2) != string(b) {
		t.Errorf("same state, other order: %s\nwant %s", b2, b)
	}
}

// A state file is bytes from the disk: whatever is wrong with it is an error, never a
// panic, and it is never half used.
func TestParseStateRefuses(t *testing.T) {
	good, err := fullState().marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte {
		if !strings.Contains(string(good), old) {
			t.Fatalf("%q not in %s", old, good)
		}
		return []byte(strings.Replace(string(good), old, new, 1))
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "EOF"},
		{"truncated", good[:len(good)/2], "unexpected EOF"},
		{"not JSON", []byte("\x00\x01garbage"), "invalid character"},
		{"two documents", append(append([]byte{}, good...), good...), "data after"},
		{"another version", edit(`"version":1`, `"version":2`), "version 2"},
		{"another node", edit(`"node":"node-a"`, `"node":"node-b"`), `not "node-a"`},
		{"unknown field", edit(`"version":1`, `"version":1,"extra":true`), "unknown field"},
		{"bad address", edit(`"192.168.50.200"`, `"192.168.50.300"`), "ParseAddr"},
		{"empty address", edit(`"192.168.50.200"`, `""`), "l2: address invalid"},
		{"peer without port", edit(`"192.168.50.13:7946"`, `"192.168.50.13:0"`), "need a name"},
		{"interface name with a slash", edit(`"eth1"`, `"../x"`), "interface name"},
		{"interface name too long", edit(`"eth1"`, `"eth1234567890123"`), "interface name"},
		{"prefix with host bits", edit(`"198.51.100.10/32"`, `"198.51.100.10/24"`), "prefix"},
		{"peers without a router ID", edit(`"RouterID":"192.168.50.11",`, ``), "router ID"},
		{"IPv6 router ID", edit(`"RouterID":"192.168.50.11"`, `"RouterID":"fd00::1"`), "router ID"},
		{"negative policy count", edit(`"Policies":1`, `"Policies":-1`), "policies"},
		{"wrong type", edit(`"Policies":1`, `"Policies":"1"`), "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseState(tt.b, "node-a")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseState: %v, want an error containing %q", err, tt.want)
			}
			if s.Node != "" || len(s.L2.Entries) != 0 || len(s.BGP.Paths) != 0 {
				t.Errorf("parseState returned a half state with its error: %+v", s)
			}
		})
	}
}

// The store writes the file when what it holds changes, and only then, replacing it whole.
func TestStateStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, found, err := readState(dir, "node-a"); found || err != nil {
		t.Fatalf("no file: found %v, %v", found, err)
	}
	full := fullState()
	s := newStateStore(dir, logr.Discard(), state{Node: "node-a"})
	s.setL2(full.L2)
	s.setBGP(full.BGP)
	s.setDatapathInterface("eth0")
	if s.writes != 3 {
		t.Errorf("%d writes for three changes", s.writes)
	}
	again := fullState()
	again.L2.Entries[0], again.L2.Entries[1] = again.L2.Entries[1], again.L2.Entries[0]
	s.setL2(again.L2)
	s.setBGP(again.BGP)
	s.setDatapathInterface("eth0")
	if s.writes != 3 {
		t.Errorf("%d writes after setting the same state again, want still 3", s.writes)
	}
	got, found, err := readState(dir, "node-a")
	if !found || err != nil {
		t.Fatalf("readState: found %v, %v", found, err)
	}
	want := fullState()
	want.Version = stateVersion
	want.normalize()
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
	// Only root reads it (MD5 passwords), and no temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != stateFileName {
		t.Errorf("state dir holds %v, want only %s", entries, stateFileName)
	}
	if fi, err := os.Stat(filepath.Join(dir, stateFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v, want 0600", fi.Mode(), err)
	}
	// A store started from the file keeps it as it is until something changes.
	s2 := newStateStore(dir, logr.Discard(), got)
	s2.setL2(got.L2)
	if s2.writes != 0 {
		t.Errorf("a store started from the file rewrote it unchanged")
	}
	s2.setL2(l2State{})
	if s2.writes != 1 {
		t.Errorf("%d writes after a change", s2.writes)
	}
	// A corrupt file is an error, and a store without a directory writes nothing.
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"version":1,`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, found, err := readState(dir, "node-a"); found || err == nil {
		t.Errorf("corrupt file: found %v, %v; want an error", found, err)
	}
	var none *stateStore
	none.setL2(full.L2) // nil store: nothing, no panic
	newStateStore("", logr.Discard(), state{}).setL2(full.L2)
}

// FuzzParseState: any bytes parse to a valid state or to an error, and a state that parses
// marshals to bytes that parse to the same state.
func FuzzParseState(f *testing.F) {
	good, err := fullState().marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version":1,"node":"node-a","L2":{},"BGP":{}}`))
	f.Add([]byte(`{"version":1,"node":"node-a","L2":{"Entries":[{"Addr":"::ffff:1.2.3.4"}]},"BGP":{}}`))
	f.Add([]byte(`{"version":1,"node":"node-a","L2":{"Peers":[{"Name":"b","Addr":"[fe80::1%eth0]:7946"}]},"BGP":{}}`))
	f.Add([]byte(`{"version":1,"node":"node-a","BGP":{"Paths":[{"Prefix":"10.0.0.0/8","Peers":null}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseState(b, "node-a")
		if err != nil {
			return
		}
		_ = l2Want(s.L2.Entries, "node-a", []string{"node-a", "node-b"}, []string{"eth0"})
		_ = s.L2.down([]string{"eth0"})
		b2, err := s.marshal()
		if err != nil {
			t.Fatalf("marshal of a parsed state: %v", err)
		}
		s2, err := parseState(b2, "node-a")
		if err != nil {
			t.Fatalf("parse of marshalled %s: %v", b2, err)
		}
		b3, err := s2.marshal()
		if err != nil || string(b3) != string(b2) {
			t.Fatalf("marshal not stable: %s then %s (%v)", b2, b3, err)
		}
	})
}
