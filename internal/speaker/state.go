package speaker

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// The state file keeps, on the node, what the speaker last applied: the inputs of the layer 2
// election (the peers and, per address, the eligible nodes and this node's interfaces) and
// the BGP sessions and paths. A speaker that starts while the API server cannot be reached
// announces from it (fallback.go) until its caches sync; every reconcile after that replaces
// it. It lives in a hostPath under /run (--state-dir), so it survives the container's restarts
// but not the node's: the kubelet restarts a crashed container on its own, with the API
// server down or not, but after a reboot it needs the API server to learn its pods at all,
// and by then the node has been gone long enough for every address to have moved.
//
// The format is the speaker's own and may change between versions: a file that does not
// parse as this version's is logged and ignored, never half used.

// stateVersion is the format's version; a file of another one is ignored.
const stateVersion = 1

// stateFileName is the file in the state directory.
const stateFileName = "speaker.json"

// maxStateSize bounds what is read of the file: a few hundred bytes per address and path.
const maxStateSize = 64 << 20

// state is the file's content.
type state struct {
	Version int    `json:"version"`
	Node    string `json:"node"`
	L2      l2State
	BGP     bgpState
	// DatapathInterface is where the XDP datapath was attached (--datapath=xdp): without
	// --datapath-interface it comes from the Node, which a speaker starting offline lacks.
	DatapathInterface string `json:",omitempty"`
}

// l2State is what the layer 2 election needs: it runs again on the live set, so that only
// the node the others elect answers, whatever changed since the file was written.
type l2State struct {
	// Peers are the other speakers, whose heartbeats say who is alive.
	Peers []member.Peer `json:",omitempty"`
	// Policies is how many L2Policies there were, and Interfaces this node's interfaces
	// (up or not) that any of them selects: with policies and none of these interfaces up,
	// the node cannot announce and stops heartbeating, as when online.
	Policies   int      `json:",omitempty"`
	Interfaces []string `json:",omitempty"`
	// Entries are the addresses to elect an announcer for, one per address and policy.
	Entries []l2Entry `json:",omitempty"`
}

// l2Entry is one address under one L2Policy: the nodes eligible to announce it, alive or
// not, and the interfaces of this node the policy selects (up or not).
type l2Entry struct {
	Addr       netip.Addr
	Candidates []string `json:",omitempty"`
	Interfaces []string `json:",omitempty"`
}

// winner is the node that answers for the address among the live nodes.
func (e l2Entry) winner(alive []string) (string, bool) {
	live := make([]string, 0, len(e.Candidates))
	for _, c := range e.Candidates {
		if slices.Contains(alive, c) {
			live = append(live, c)
		}
	}
	return l2.Announcer(e.Addr, live)
}

// bgpState is what the BGP speaker was given.
type bgpState struct {
	RouterID netip.Addr `json:",omitzero"`
	ASN      uint32     `json:",omitempty"`
	Peers    []bgp.Peer `json:",omitempty"`
	Paths    []bgp.Path `json:",omitempty"`
}

// l2Want is what this node (me) answers for: each address whose entry elects it among the
// live nodes, on the entry's interfaces that are usable now. The online reconcile and the
// fallback both use it, so a speaker running from its file elects as it would online.
func l2Want(entries []l2Entry, me string, alive, usable []string) map[netip.Addr][]string {
	want := map[netip.Addr][]string{}
	for _, e := range entries {
		if w, ok := e.winner(alive); !ok || w != me {
			continue
		}
		for _, name := range e.Interfaces {
			if slices.Contains(usable, name) && !slices.Contains(want[e.Addr], name) {
				want[e.Addr] = append(want[e.Addr], name)
			}
		}
	}
	return want
}

// l2Down says whether a node with these usable interfaces cannot announce: there are
// policies, and none of the interfaces they select is up.
func (s l2State) down(usable []string) bool {
	return s.Policies > 0 && !slices.ContainsFunc(s.Interfaces, func(n string) bool { return slices.Contains(usable, n) })
}

// normalize sorts every list, so that equal states marshal to equal bytes (the file is
// written only when they differ) whatever the order the cache listed objects in.
func (s *state) normalize() {
	slices.SortFunc(s.L2.Peers, func(a, b member.Peer) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(s.L2.Interfaces)
	for i := range s.L2.Entries {
		slices.Sort(s.L2.Entries[i].Candidates)
	}
	slices.SortFunc(s.L2.Entries, func(a, b l2Entry) int {
		return cmp.Or(a.Addr.Compare(b.Addr), slices.Compare(a.Candidates, b.Candidates), slices.Compare(a.Interfaces, b.Interfaces))
	})
	slices.SortFunc(s.BGP.Peers, func(a, b bgp.Peer) int { return a.Address.Compare(b.Address) })
	for i := range s.BGP.Paths {
		slices.SortFunc(s.BGP.Paths[i].Peers, netip.Addr.Compare)
	}
	slices.SortFunc(s.BGP.Paths, func(a, b bgp.Path) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
			slices.CompareFunc(a.Peers, b.Peers, netip.Addr.Compare), strings.Compare(a.String(), b.String()))
	})
}

// marshal encodes the state in its normal form; it leaves s's lists as they are.
func (s state) marshal() ([]byte, error) {
	s.Version = stateVersion
	s.L2.Peers = slices.Clone(s.L2.Peers)
	s.L2.Interfaces = slices.Clone(s.L2.Interfaces)
	s.L2.Entries = slices.Clone(s.L2.Entries)
	for i := range s.L2.Entries {
		s.L2.Entries[i].Candidates = slices.Clone(s.L2.Entries[i].Candidates)
	}
	s.BGP.Peers = slices.Clone(s.BGP.Peers)
	s.BGP.Paths = slices.Clone(s.BGP.Paths)
	for i := range s.BGP.Paths {
		s.BGP.Paths[i].Peers = slices.Clone(s.BGP.Paths[i].Peers)
	}
	s.normalize()
	return json.Marshal(s)
}

// parseState reads a state file's bytes, written for node. Anything it cannot vouch for is an
// error: unknown fields, another version or node, addresses that are not addresses.
func parseState(b []byte, node string) (state, error) {
	var s state
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return state{}, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return state{}, errors.New("data after the state")
	}
	if s.Version != stateVersion {
		return state{}, fmt.Errorf("version %d, want %d", s.Version, stateVersion)
	}
	if s.Node != node {
		return state{}, fmt.Errorf("written for node %q, not %q", s.Node, node)
	}
	if err := s.validate(); err != nil {
		return state{}, err
	}
	return s, nil
}

func (s state) validate() error {
	for _, p := range s.L2.Peers {
		if p.Name == "" || !p.Addr.IsValid() || p.Addr.Port() == 0 {
			return fmt.Errorf("l2 peer %q at %v: need a name, an address and a port", p.Name, p.Addr)
		}
	}
	if s.L2.Policies < 0 {
		return fmt.Errorf("l2: %d policies", s.L2.Policies)
	}
	for _, n := range s.L2.Interfaces {
		if !validIfname(n) {
			return fmt.Errorf("l2: interface name %q", n)
		}
	}
	for _, e := range s.L2.Entries {
		if !e.Addr.IsValid() || e.Addr.Zone() != "" || e.Addr.IsUnspecified() || e.Addr.Is4In6() {
			return fmt.Errorf("l2: address %v", e.Addr)
		}
		for _, c := range e.Candidates {
			if c == "" {
				return fmt.Errorf("l2 %v: empty node name", e.Addr)
			}
		}
		for _, n := range e.Interfaces {
			if !validIfname(n) {
				return fmt.Errorf("l2 %v: interface name %q", e.Addr, n)
			}
		}
	}
	if len(s.BGP.Peers) > 0 && (!s.BGP.RouterID.Is4() || s.BGP.ASN == 0) {
		return fmt.Errorf("bgp: router ID %v, AS %d", s.BGP.RouterID, s.BGP.ASN)
	}
	for _, p := range s.BGP.Peers {
		if !p.Address.IsValid() {
			return errors.New("bgp: a peer without an address")
		}
	}
	for _, p := range s.BGP.Paths {
		if !p.Prefix.IsValid() || p.Prefix != p.Prefix.Masked() {
			return fmt.Errorf("bgp: prefix %v", p.Prefix)
		}
		for _, a := range p.Peers {
			if !a.IsValid() {
				return fmt.Errorf("bgp %v: a peer without an address", p.Prefix)
			}
		}
	}
	return nil
}

// validIfname is what Linux takes as an interface name: 1 to 15 bytes, no '/', no space, not
// "." or "..".
func validIfname(n string) bool {
	return n != "" && len(n) < 16 && n != "." && n != ".." && !strings.ContainsAny(n, "/: \t\n\x00")
}

// readState loads dir's state file for node; found is false when there is none.
func readState(dir, node string) (s state, found bool, err error) {
	f, err := os.Open(filepath.Join(dir, stateFileName)) //nolint:gosec // the operator's --state-dir
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return state{}, false, err
	}
	if len(b) > maxStateSize {
		return state{}, false, fmt.Errorf("larger than %d bytes", maxStateSize)
	}
	s, err = parseState(b, node)
	return s, err == nil, err
}

// writeState replaces dir's state file with b atomically: a reader (this speaker, restarted
// at any moment) sees the old file or the new one, never a part. It may hold MD5 passwords,
// so only root reads it.
func writeState(dir string, b []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+stateFileName+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := tmp.Sync(); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, stateFileName))
}

// stateStore keeps the state the reconciles last applied and writes it to the file when it
// changes. The zero dir keeps nothing.
type stateStore struct {
	dir string
	log logr.Logger

	mu      sync.Mutex
	cur     state
	written []byte
	writes  int // files written, for tests
}

// newStateStore starts from what was loaded (or just the node's name), so that a part no
// reconcile has replaced yet is not lost from the file.
func newStateStore(dir string, log logr.Logger, loaded state) *stateStore {
	s := &stateStore{dir: dir, log: log, cur: loaded}
	if b, err := loaded.marshal(); err == nil {
		s.written = b
	}
	return s
}

func (s *stateStore) setL2(l2 l2State) {
	s.update(func(st *state) { st.L2 = l2 })
}

func (s *stateStore) setBGP(b bgpState) {
	s.update(func(st *state) { st.BGP = b })
}

func (s *stateStore) setDatapathInterface(name string) {
	s.update(func(st *state) { st.DatapathInterface = name })
}

func (s *stateStore) update(f func(*state)) {
	if s == nil || s.dir == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.cur)
	b, err := s.cur.marshal()
	if err != nil {
		s.log.Error(err, "state file: encode")
		return
	}
	if bytes.Equal(b, s.written) {
		return
	}
	if err := writeState(s.dir, b); err != nil {
		s.log.Error(err, "state file: write", "dir", s.dir)
		return
	}
	s.written = b
	s.writes++
}
