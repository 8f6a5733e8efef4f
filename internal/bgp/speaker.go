// Package bgp announces addresses to routers over BGP. It wraps one embedded GoBGP server
// (github.com/osrg/gobgp/v4) per speaker and keeps its peers and advertised paths equal to
// the sets it is given, changing only what differs: a session is never reset to apply a
// change that does not concern it (DESIGN.md section 4).
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// DefaultPort is the BGP port a peer is dialled on when Peer.Port is zero.
const DefaultPort = 179

// Config configures the speaker for its whole life.
type Config struct {
	// ListenPort is the port to accept sessions on; -1 does not listen (the speaker only
	// dials), 0 means DefaultPort.
	ListenPort int32
	// Logger receives GoBGP's logs; nil discards them.
	Logger *slog.Logger
}

// Identity is what the speaker is to its peers: its BGP identifier and its AS. GoBGP cannot
// change either while it runs, so a change replaces the server (every session restarts).
type Identity struct {
	// RouterID is the BGP identifier; it must be an IPv4 address (RFC 4271), also on
	// IPv6-only nodes.
	RouterID netip.Addr
	// ASN is the local autonomous system number; a peer may be presented another
	// (Peer.LocalASN).
	ASN uint32
}

func (id Identity) validate() error {
	if !id.RouterID.Is4() {
		return fmt.Errorf("router ID %v: must be an IPv4 address", id.RouterID)
	}
	if id.ASN == 0 {
		return errors.New("ASN must not be 0")
	}
	return nil
}

// Peer is a BGP neighbour.
type Peer struct {
	Address netip.Addr
	ASN     uint32
	// LocalASN is the AS this speaker presents to the peer; zero means Identity.ASN.
	LocalASN uint32
	// Port is the peer's port; zero means DefaultPort.
	Port uint16
	// Source is the local address the session is bound to; the zero value lets the kernel
	// choose.
	Source netip.Addr
	// Password enables TCP MD5 signatures (RFC 2385) when not empty.
	Password string
	// HoldTime, KeepaliveTime and ConnectRetry are whole seconds; zero keeps GoBGP's
	// defaults (90 s, 30 s, 120 s). GoBGP makes its first connection attempt 1.5 to 2 s
	// after the peer is added, gives each attempt ConnectRetry less 1 s (at least 2 s) to
	// connect, and after a failed one waits 0.75 to 1 times ConnectRetry (2 s if that is
	// less): with 2 s, TestConnectRetry sees the session up 0.6 to 1.7 s after the router.
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	ConnectRetry  time.Duration
	// EBGPMultihop lets an eBGP session cross routers (TTL 255 instead of 1).
	EBGPMultihop bool
	// IPv4 and IPv6 are the unicast families the session carries; both false means the
	// family of Address alone. Paths of the other family than Address are sent with this
	// node's address of that family on the interface that reaches the peer as next hop.
	IPv4, IPv6 bool
	// GracefulRestart, when not zero, negotiates graceful restart (RFC 4724) with this
	// restart time: when the speaker restarts, the peer keeps its routes (stale) for that
	// long, and traffic keeps flowing until the speaker is back.
	GracefulRestart time.Duration
	// BFD, when enabled, runs a BFD session (RFC 5880, single hop) beside the BGP session;
	// BFD going Down resets the BGP session at once.
	BFD BFD
}

// BFD configures a peer's BFD session. GoBGP's implementation serves it: asynchronous mode,
// single hop, no echo, no passive mode.
type BFD struct {
	Enabled bool
	// TransmitInterval is the desired minimum transmit interval and ReceiveInterval the
	// required minimum receive interval; zero means GoBGP's default (1 s).
	TransmitInterval time.Duration
	ReceiveInterval  time.Duration
	// DetectMultiplier is the number of missed packets that takes the session down;
	// zero means 3.
	DetectMultiplier uint8
}

// Path is an advertised prefix.
type Path struct {
	Prefix netip.Prefix
	// NextHop is the next hop to announce; the zero value means the address the session
	// to each peer is bound to (next-hop self). Over a session of the other address family
	// (an IPv6 prefix to an IPv4 peer) set it explicitly.
	NextHop netip.Addr
	// Communities are RFC 1997 communities, each as ASN<<16 | value.
	Communities []uint32
	// LargeCommunities are RFC 8092 communities (global administrator, data 1, data 2).
	LargeCommunities [][3]uint32
	// LocalPref is sent to iBGP peers; nil lets GoBGP send its default (100).
	LocalPref *uint32
	// Peers are the peers the path is sent to; nil means every peer. Several paths may
	// share a prefix when their peer sets are disjoint (one advertisement's communities to
	// one router, another's to another) and their next hops are the same.
	Peers []netip.Addr
}

// SessionState is the BGP finite state machine's state for one peer (RFC 4271 section 8).
type SessionState int

// The session states; only Established exchanges routes.
const (
	StateUnknown SessionState = iota
	StateIdle
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

func (s SessionState) String() string {
	switch s {
	case StateIdle:
		return "Idle"
	case StateConnect:
		return "Connect"
	case StateActive:
		return "Active"
	case StateOpenSent:
		return "OpenSent"
	case StateOpenConfirm:
		return "OpenConfirm"
	case StateEstablished:
		return "Established"
	default:
		return "Unknown"
	}
}

// PeerState is one configured peer's session state.
type PeerState struct {
	Address netip.Addr
	State   SessionState
	// Advertised is the number of prefixes sent to the peer.
	Advertised uint64
	// BFD is the BFD session's state (RFC 5880: AdminDown, Down, Init, Up); empty when
	// the peer has no BFD. BFDFailures counts its transitions from Up to Down.
	BFD         string
	BFDFailures uint64
}

// Established reports whether the session exchanges routes.
func (p PeerState) Established() bool { return p.State == StateEstablished }

// Speaker keeps one embedded GoBGP server in step with what it is given. Apply (or SetPeers
// and SetPaths) may be called before or while Run runs; Run runs a server whenever there
// are peers, with the Identity given, and applies the peers and paths to it: at once while
// it runs, and when it starts.
//
// Paths go into GoBGP's global RIB once per prefix, without attributes of their own; one
// export policy decides, per peer, which prefixes the peer gets and with which
// communities, local preference and next hop (policy.go). So a path can go to some peers
// only, with different attributes to different peers, and a change of who gets what is
// applied with a soft reset towards the peers concerned: no session is reset.
type Speaker struct {
	cfg Config
	// changed tells Run that the wanted identity or peers changed (a server may have to
	// start, stop or be replaced).
	changed chan struct{}

	// mu serialises the reconciliations and guards everything below. It is held across
	// calls into GoBGP so that Run never stops the server under a running reconciliation.
	mu      sync.Mutex
	running bool
	id      Identity          // wanted
	srv     *server.BgpServer // the server Run runs; nil when none
	srvID   Identity          // srv's
	// wantPeer and wantPath are what Apply gave.
	wantPeer map[netip.Addr]Peer
	wantPath []Path
	// have* are what GoBGP holds: an entry is written only after GoBGP accepted it, so a
	// failed change is retried by the next Apply.
	havePeer map[netip.Addr]Peer
	haveRIB  map[netip.Prefix]netip.Addr // prefix -> next hop (invalid: self)
	export   exportState
	// restarted is set when Run starts a server: peers added to it announce that this
	// speaker restarted (graceful restart's R bit), so routers keep its stale routes until
	// it has sent them again.
	restarted bool

	// bfdMu guards bfd: each BFD peer's last state and count of Up -> Down transitions,
	// kept by Run's sampler (GoBGP keeps no such count).
	bfdMu sync.Mutex
	bfd   map[netip.Addr]bfdRecord
}

type bfdRecord struct {
	state    string
	failures uint64
}

// bfdSample is how often Run samples BFD states. A BFD session that went Down needs at
// least two packets to be Up again, so at the fastest rates FRR offers (10 ms) a flap could
// be missed; at the usual 100 ms and above none is.
const bfdSample = 20 * time.Millisecond

// startRetry is how long Run waits before it tries again to start a server GoBGP refused
// to start, unless the wanted configuration changes first.
const startRetry = 5 * time.Second

// New validates cfg and returns a speaker that is not yet running.
func New(cfg Config) (*Speaker, error) {
	if cfg.ListenPort < -1 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("listen port %d: must be -1 or 0 to 65535", cfg.ListenPort)
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = DefaultPort
	}
	return &Speaker{
		cfg:      cfg,
		changed:  make(chan struct{}, 1),
		wantPeer: map[netip.Addr]Peer{},
		havePeer: map[netip.Addr]Peer{},
		haveRIB:  map[netip.Prefix]netip.Addr{},
		export:   newExportState(),
		bfd:      map[netip.Addr]bfdRecord{},
	}, nil
}

// Run owns the speaker's GoBGP servers until ctx ends: it starts one when there are peers,
// stops it when none are left, and replaces it when the identity changes, each time with
// the peers and paths of the moment in place before any session starts. When ctx ends it
// stops the server it runs, which closes every session (Cease), and returns once GoBGP's
// goroutines are gone. A Speaker runs at most once.
func (s *Speaker) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("speaker already ran")
	}
	s.running = true
	s.mu.Unlock()

	for {
		s.mu.Lock()
		id, want := s.id, len(s.wantPeer) > 0
		s.mu.Unlock()
		if want {
			err := s.serve(ctx, id)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				continue // the wanted identity or peers changed: look again
			}
			s.logger().Error("BGP server not started: retrying", "routerID", id.RouterID, "asn", id.ASN, "in", startRetry, "error", err)
			t := time.NewTimer(startRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.changed:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

// serve runs one GoBGP server with identity id until ctx ends or the server is no longer
// wanted as it is (no peers, or another identity); it returns once the server has stopped
// and its goroutines are gone, with an error only when it could not start it.
func (s *Speaker) serve(ctx context.Context, id Identity) error {
	var opts []server.ServerOption
	if s.cfg.Logger != nil {
		opts = append(opts, server.LoggerOption(s.cfg.Logger, nil))
	}
	srv := server.NewBgpServer(opts...)
	// Serve is GoBGP's event loop; this goroutine is ours and ends when srv.Stop (below,
	// on every path out of serve) makes Serve return.
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve()
	}()
	stop := func() {
		srv.Stop()
		<-served
	}

	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        id.ASN,
		RouterId:   id.RouterID.String(),
		ListenPort: s.cfg.ListenPort,
	}})
	if err != nil {
		stop()
		return fmt.Errorf("start BGP: %w", err)
	}

	s.mu.Lock()
	s.srv, s.srvID = srv, id
	s.restarted = true
	err = s.syncLocked()
	s.mu.Unlock()
	if err != nil {
		// Not fatal: the failed entries stay out of have*, so the next Apply retries them.
		s.logger().Error("apply initial BGP configuration", "error", err)
	}

	s.sampleBFD(ctx, srv)

	s.bfdMu.Lock()
	clear(s.bfd)
	s.bfdMu.Unlock()
	stop()
	return nil
}

// sampleBFD records BFD state changes until ctx ends or srv is no longer wanted as it is;
// it then detaches srv from the speaker (nothing is applied to it any more) and returns.
func (s *Speaker) sampleBFD(ctx context.Context, srv *server.BgpServer) {
	t := time.NewTicker(bfdSample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.detachLocked()
			s.mu.Unlock()
			return
		case <-s.changed:
			s.mu.Lock()
			if !s.currentLocked() {
				s.detachLocked()
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			continue
		case <-t.C:
		}
		seen := map[netip.Addr]bool{}
		srv.ListBfdPeer(ctx, func(addr string, b *api.BfdPeerState) {
			a, err := netip.ParseAddr(addr)
			if err != nil {
				return
			}
			a = a.Unmap()
			seen[a] = true
			st := bfdState(b.SessionState)
			s.bfdMu.Lock()
			r := s.bfd[a]
			if r.state == "Up" && st != "Up" {
				r.failures++
			}
			r.state = st
			s.bfd[a] = r
			s.bfdMu.Unlock()
		})
		s.bfdMu.Lock()
		for a := range s.bfd {
			if !seen[a] {
				delete(s.bfd, a)
			}
		}
		s.bfdMu.Unlock()
	}
}

// currentLocked reports whether the running server is the one wanted: there are peers and
// the identity is the server's. Only then is anything applied to it. s.mu is held.
func (s *Speaker) currentLocked() bool {
	return s.srv != nil && len(s.wantPeer) > 0 && s.srvID == s.id
}

// detachLocked forgets the running server and what it holds. s.mu is held.
func (s *Speaker) detachLocked() {
	s.srv = nil
	clear(s.havePeer)
	clear(s.haveRIB)
	s.export = newExportState()
}

func (s *Speaker) logger() *slog.Logger {
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Apply makes the speaker what it is given: a server with identity id (a server with
// another identity is replaced: its sessions end and start again), the peers configured,
// and paths advertised. Without peers no server runs, and id may be the zero Identity.
// Only what differs changes, as SetPeers and SetPaths say; in particular a new server
// and a new peer start with the paths already in place. Apply may be called before Run
// and while it runs; after Run has returned it only records. It returns an error, and
// changes nothing, when the arguments are not valid, and otherwise the errors of the
// changes GoBGP refused, which the next call retries. A server Run has to start or replace
// is started after Apply returns, and Run logs what GoBGP refuses then.
func (s *Speaker) Apply(id Identity, peers []Peer, paths []Path) error {
	wantPeer, err := normalisePeers(peers)
	if err != nil {
		return err
	}
	wantPath, err := normalisePaths(paths)
	if err != nil {
		return err
	}
	if len(wantPeer) > 0 {
		if err := id.validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.wantPeer, s.wantPath = id, wantPeer, wantPath
	s.wake()
	return s.syncLocked()
}

// wake tells Run to look at what is wanted again.
func (s *Speaker) wake() {
	select {
	case s.changed <- struct{}{}:
	default: // one pending wake-up covers any number of changes
	}
}

func normalisePeers(peers []Peer) (map[netip.Addr]Peer, error) {
	want := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		p, err := normalisePeer(p)
		if err != nil {
			return nil, err
		}
		if _, dup := want[p.Address]; dup {
			return nil, fmt.Errorf("peer %v given twice", p.Address)
		}
		want[p.Address] = p
	}
	return want, nil
}

func normalisePaths(paths []Path) ([]Path, error) {
	want := make([]Path, 0, len(paths))
	nextHop := make(map[netip.Prefix]netip.Addr, len(paths))
	everyPeer := map[netip.Prefix]bool{}
	seen := map[netip.Prefix]map[netip.Addr]bool{}
	for _, p := range paths {
		if !p.Prefix.IsValid() || p.Prefix != p.Prefix.Masked() {
			return nil, fmt.Errorf("path %v: not a valid prefix without host bits", p.Prefix)
		}
		if p.NextHop.IsValid() && p.NextHop.Is4() != p.Prefix.Addr().Is4() {
			return nil, fmt.Errorf("path %v: next hop %v is of the other address family", p.Prefix, p.NextHop)
		}
		if nh, ok := nextHop[p.Prefix]; ok {
			if nh != p.NextHop {
				return nil, fmt.Errorf("path %v: given with next hops %v and %v", p.Prefix, nh, p.NextHop)
			}
			if everyPeer[p.Prefix] || p.Peers == nil {
				return nil, fmt.Errorf("path %v given twice for the same peers", p.Prefix)
			}
		}
		nextHop[p.Prefix] = p.NextHop
		if p.Peers == nil {
			everyPeer[p.Prefix] = true
		}
		if seen[p.Prefix] == nil {
			seen[p.Prefix] = map[netip.Addr]bool{}
		}
		for _, a := range p.Peers {
			if seen[p.Prefix][a.Unmap()] {
				return nil, fmt.Errorf("path %v given twice for peer %v", p.Prefix, a)
			}
			seen[p.Prefix][a.Unmap()] = true
		}
		p.Communities = slices.Clone(p.Communities)
		p.LargeCommunities = slices.Clone(p.LargeCommunities)
		if p.LocalPref != nil {
			lp := *p.LocalPref
			p.LocalPref = &lp
		}
		if p.Peers != nil {
			ps := make([]netip.Addr, len(p.Peers))
			for i, a := range p.Peers {
				ps[i] = a.Unmap()
			}
			p.Peers = ps
		}
		want = append(want, p)
	}
	return want, nil
}

// PeerStates returns the session state of every configured peer, sorted by address: none
// without peers; every peer Idle while no server runs them (before Run has started one,
// while it replaces one).
func (s *Speaker) PeerStates() ([]PeerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := map[netip.Addr]PeerState{}
	if s.currentLocked() {
		err := s.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if p.State == nil {
				return
			}
			a, err := netip.ParseAddr(p.State.NeighborAddress)
			if err != nil {
				return
			}
			st := PeerState{Address: a.Unmap(), State: sessionState(p.State.SessionState)}
			for _, af := range p.AfiSafis {
				if af.State != nil {
					st.Advertised += af.State.Advertised
				}
			}
			got[st.Address] = st
		})
		if err != nil {
			return nil, fmt.Errorf("list peers: %w", err)
		}
		s.bfdMu.Lock()
		for a, r := range s.bfd {
			if st, ok := got[a]; ok {
				st.BFD, st.BFDFailures = r.state, r.failures
				got[a] = st
			}
		}
		s.bfdMu.Unlock()
	}
	out := make([]PeerState, 0, len(s.wantPeer))
	for a, p := range s.wantPeer {
		st, ok := got[a]
		if !ok {
			st = PeerState{Address: a, State: StateIdle}
		}
		if p.BFD.Enabled && st.BFD == "" {
			st.BFD = "Down"
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y PeerState) int { return x.Address.Compare(y.Address) })
	return out, nil
}

func bfdState(s api.BfdSessionState) string {
	switch s {
	case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
		return "AdminDown"
	case api.BfdSessionState_BFD_SESSION_STATE_INIT:
		return "Init"
	case api.BfdSessionState_BFD_SESSION_STATE_UP:
		return "Up"
	default:
		return "Down"
	}
}

func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return StateIdle
	case api.PeerState_SESSION_STATE_CONNECT:
		return StateConnect
	case api.PeerState_SESSION_STATE_ACTIVE:
		return StateActive
	case api.PeerState_SESSION_STATE_OPENSENT:
		return StateOpenSent
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return StateEstablished
	default:
		return StateUnknown
	}
}

func normalisePeer(p Peer) (Peer, error) {
	if !p.Address.IsValid() {
		return p, errors.New("peer without address")
	}
	p.Address = p.Address.Unmap()
	if p.ASN == 0 {
		return p, fmt.Errorf("peer %v: ASN must not be 0", p.Address)
	}
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	if p.Source.IsValid() {
		p.Source = p.Source.Unmap()
		if p.Source.Is4() != p.Address.Is4() {
			return p, fmt.Errorf("peer %v: source address %v is of the other address family", p.Address, p.Source)
		}
	}
	if !p.IPv4 && !p.IPv6 {
		p.IPv4, p.IPv6 = p.Address.Is4(), p.Address.Is6()
	}
	for name, d := range map[string]time.Duration{
		"hold time": p.HoldTime, "keepalive time": p.KeepaliveTime, "connect retry": p.ConnectRetry,
		"graceful restart time": p.GracefulRestart,
	} {
		if d < 0 || d%time.Second != 0 {
			return p, fmt.Errorf("peer %v: %s %v: must be whole seconds", p.Address, name, d)
		}
	}
	if p.HoldTime != 0 && p.HoldTime < 3*time.Second {
		return p, fmt.Errorf("peer %v: hold time %v: must be 0 or at least 3s (RFC 4271)", p.Address, p.HoldTime)
	}
	if p.GracefulRestart > 4095*time.Second {
		return p, fmt.Errorf("peer %v: graceful restart time %v: at most 4095s (RFC 4724)", p.Address, p.GracefulRestart)
	}
	if b := p.BFD; b.Enabled {
		for name, d := range map[string]time.Duration{"transmit interval": b.TransmitInterval, "receive interval": b.ReceiveInterval} {
			if d < 0 || d%time.Microsecond != 0 || d > time.Hour {
				return p, fmt.Errorf("peer %v: BFD %s %v: must be whole microseconds up to 1h", p.Address, name, d)
			}
		}
		if b.DetectMultiplier == 0 {
			p.BFD.DetectMultiplier = 3
		}
	} else {
		p.BFD = BFD{}
	}
	return p, nil
}

// carries reports whether the session with p carries pfx's family (p normalised).
func (p Peer) carries(pfx netip.Prefix) bool {
	if pfx.Addr().Is4() {
		return p.IPv4
	}
	return p.IPv6
}

// Carries reports whether the session with p carries addr's family: the families it names,
// or without any, its address's.
func (p Peer) Carries(addr netip.Addr) bool {
	if !p.IPv4 && !p.IPv6 {
		return addr.Is4() == p.Address.Unmap().Is4()
	}
	if addr.Unmap().Is4() {
		return p.IPv4
	}
	return p.IPv6
}

// syncLocked makes GoBGP hold wantPeer and wantPath, in an order that never sends a peer
// a path it should not have and lets a new session start with its full set of paths (its
// first UPDATEs then End-of-RIB, which graceful restart relies on). It changes nothing in a
// server that Run is about to stop or replace. s.mu is held.
func (s *Speaker) syncLocked() error {
	if !s.currentLocked() {
		return nil
	}
	ctx := context.Background()
	var errs []error
	// 1. Sessions that are gone or changed end first: nothing below concerns them.
	for a, have := range s.havePeer {
		if want, ok := s.wantPeer[a]; ok && want == have {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete peer %v: %w", a, err))
			continue
		}
		delete(s.havePeer, a)
	}

	// 2. Who gets what, then the policy that says so; prefixes are added to its sets
	// before their paths enter the RIB and leave them after the paths left it.
	rib, want, err := s.desiredLocked()
	errs = append(errs, err)
	stays := func(pfx netip.Prefix) bool {
		have, ok1 := s.haveRIB[pfx]
		nh, ok2 := rib[pfx]
		return ok1 && ok2 && have == nh
	}
	changed, err := s.export.apply(ctx, s.srv, want, stays)
	errs = append(errs, err)

	// 3. The RIB.
	var withdraw, announce []*apiutil.Path
	var withdrawn, announced []netip.Prefix
	for pfx := range s.haveRIB {
		if _, ok := rib[pfx]; ok {
			continue
		}
		p, err := withdrawal(pfx)
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %v: %w", pfx, err))
			continue
		}
		withdraw, withdrawn = append(withdraw, p), append(withdrawn, pfx)
	}
	for pfx, nh := range rib {
		if have, ok := s.haveRIB[pfx]; ok && have == nh {
			continue
		}
		p, err := announcement(pfx, nh)
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %v: %w", pfx, err))
			continue
		}
		announce, announced = append(announce, p), append(announced, pfx)
	}
	if len(withdraw) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: withdraw}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d paths: %w", len(withdraw), err))
		} else {
			for _, pfx := range withdrawn {
				delete(s.haveRIB, pfx)
			}
		}
	}
	if len(announce) > 0 {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: announce}); err != nil {
			errs = append(errs, fmt.Errorf("announce %d paths: %w", len(announce), err))
		} else {
			for _, pfx := range announced {
				s.haveRIB[pfx] = rib[pfx]
			}
		}
	}
	errs = append(errs, s.export.prune(ctx, s.srv))

	// 4. Peers whose share of paths already in the RIB changed are sent the difference
	// (a soft reset out: the session stays up). Paths that entered the RIB just now were
	// judged by the new policy already.
	for _, a := range changed {
		if _, ok := s.havePeer[a]; !ok {
			continue
		}
		err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: a.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT})
		if err != nil {
			errs = append(errs, fmt.Errorf("resend paths to %v: %w", a, err))
		}
	}

	// 5. New sessions last, so they start with every path they are due.
	for a, want := range s.wantPeer {
		if _, ok := s.havePeer[a]; ok {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(want)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %v: %w", a, err))
			continue
		}
		s.havePeer[a] = want
	}
	return errors.Join(errs...)
}

// desiredLocked computes the RIB (prefix -> next hop) and each peer's share of it.
func (s *Speaker) desiredLocked() (map[netip.Prefix]netip.Addr, map[netip.Addr]map[netip.Prefix]attrs, error) {
	rib := map[netip.Prefix]netip.Addr{}
	want := map[netip.Addr]map[netip.Prefix]attrs{}
	var errs []error
	otherNH := map[netip.Addr]netip.Addr{}
	for _, p := range s.wantPath {
		rib[p.Prefix] = p.NextHop
		peers := p.Peers
		if peers == nil {
			peers = slices.Collect(maps.Keys(s.wantPeer))
		}
		for _, a := range peers {
			peer, ok := s.wantPeer[a]
			if !ok || !peer.carries(p.Prefix) {
				continue
			}
			at := attrsOf(p)
			if !p.NextHop.IsValid() && p.Prefix.Addr().Is4() != a.Is4() {
				// Next-hop self would be the session's address, of the wrong family.
				nh, ok := otherNH[a]
				if !ok {
					var err error
					nh, err = otherFamilyAddress(peer, p.Prefix.Addr().Is4())
					if err != nil {
						errs = append(errs, fmt.Errorf("path %v to peer %v: %w", p.Prefix, a, err))
					}
					otherNH[a] = nh
				}
				if !nh.IsValid() {
					continue
				}
				at.nextHop = nh.String()
			}
			if want[a] == nil {
				want[a] = map[netip.Prefix]attrs{}
			}
			want[a][p.Prefix] = at
		}
	}
	return rib, want, errors.Join(errs...)
}

// otherFamilyAddress finds this node's address of the other family than the session's,
// on the interface the session leaves by: the next hop for paths of that family. It asks
// the kernel which local address it would use towards the peer (a UDP socket's connect
// sends nothing).
func otherFamilyAddress(p Peer, want4 bool) (netip.Addr, error) {
	local := p.Source
	if !local.IsValid() {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Address, p.Port)))
		if err != nil {
			return netip.Addr{}, fmt.Errorf("no route to the peer: %w", err)
		}
		local = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		_ = c.Close()
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		var has bool
		var other netip.Addr
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			if ip == local {
				has = true
			}
			if ip.Is4() == want4 && ip.IsGlobalUnicast() && !other.IsValid() {
				other = ip
			}
		}
		if has {
			if !other.IsValid() {
				return netip.Addr{}, fmt.Errorf("interface %s, which reaches the peer, has no global address of the other family for a next hop", ifi.Name)
			}
			return other, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("local address %v is on no interface", local)
}

func (s *Speaker) apiPeer(p Peer) *api.Peer {
	family := func(afi api.Family_Afi) *api.AfiSafi {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{
			Family:  &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST},
			Enabled: true,
		}}
		if p.GracefulRestart > 0 {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		return af
	}
	out := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.LocalASN,
			AuthPassword:    p.Password,
		},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.KeepaliveTime),
			ConnectRetry:      seconds(p.ConnectRetry),
			// GoBGP waits 30 s by default before it reconnects after a reset, and BFD
			// going Down is a reset: at first establishment FRR may signal BFD Down
			// before its BFD session is up, and the session must come straight back.
			IdleHoldTimeAfterReset: 1,
		}},
	}
	if p.Source.IsValid() {
		out.Transport.LocalAddress = p.Source.String()
	}
	if p.IPv4 {
		out.AfiSafis = append(out.AfiSafis, family(api.Family_AFI_IP))
	}
	if p.IPv6 {
		out.AfiSafis = append(out.AfiSafis, family(api.Family_AFI_IP6))
	}
	if p.EBGPMultihop {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	if p.GracefulRestart > 0 {
		out.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(p.GracefulRestart / time.Second), //nolint:gosec // normalisePeer: at most 4095
			// After a restart, hold our UPDATEs until the peer's End-of-RIB (or the
			// deferral time), then send everything and our own End-of-RIB: the peer
			// keeps our stale routes until then.
			LocalRestarting: s.restarted,
			DeferralTime:    uint32(gracefulDeferral / time.Second),
		}
	}
	if b := p.BFD; b.Enabled {
		out.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(b.TransmitInterval / time.Microsecond), //nolint:gosec // normalisePeer: at most 1h
			RequiredMinimumReceive:   uint32(b.ReceiveInterval / time.Microsecond),  //nolint:gosec // normalisePeer: at most 1h
			DetectionMultiplier:      uint32(b.DetectMultiplier),
		}
	}
	return out
}

// gracefulDeferral bounds how long a restarted speaker waits for a peer's End-of-RIB
// before it sends its paths anyway.
const gracefulDeferral = 5 * time.Second

// seconds converts a duration normalisePeer checked (whole, not negative) for GoBGP.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Second)
}

func family(pfx netip.Prefix) bgp.Family {
	if pfx.Addr().Is4() {
		return bgp.RF_IPv4_UC
	}
	return bgp.RF_IPv6_UC
}

func withdrawal(pfx netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(pfx)
	if err != nil {
		return nil, err
	}
	return &apiutil.Path{Family: family(pfx), Nlri: nlri, Withdrawal: true}, nil
}

// announcement builds GoBGP's RIB path for pfx: origin and next hop only; the export
// policy adds each peer's attributes. An unspecified next hop (0.0.0.0 or ::) is GoBGP's
// way of saying next-hop self: it substitutes each session's local address.
func announcement(pfx netip.Prefix, nh netip.Addr) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(pfx)
	if err != nil {
		return nil, err
	}
	if !nh.IsValid() {
		nh = netip.IPv4Unspecified()
		if pfx.Addr().Is6() {
			nh = netip.IPv6Unspecified()
		}
	}
	fam := family(pfx)
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if fam == bgp.RF_IPv4_UC {
		a, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	} else {
		a, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

// String renders a path for logs and test failures.
func (p Path) String() string {
	s := p.Prefix.String()
	if p.NextHop.IsValid() {
		s += " via " + p.NextHop.String()
	}
	if p.LocalPref != nil {
		s += " local-pref " + strconv.FormatUint(uint64(*p.LocalPref), 10)
	}
	if p.Peers != nil {
		s += fmt.Sprintf(" to %v", p.Peers)
	}
	return s
}
