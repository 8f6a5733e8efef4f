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

// Config configures the speaker's own side.
type Config struct {
	// RouterID is the BGP identifier; it must be an IPv4 address (RFC 4271), also on
	// IPv6-only nodes.
	RouterID netip.Addr
	// ASN is the local autonomous system number.
	ASN uint32
	// ListenPort is the port to accept sessions on; -1 does not listen (the speaker only
	// dials), 0 means DefaultPort.
	ListenPort int32
	// Logger receives GoBGP's logs; nil discards them.
	Logger *slog.Logger
}

// Peer is a BGP neighbour. Both IPv4 and IPv6 unicast are negotiated with every peer.
type Peer struct {
	Address netip.Addr
	ASN     uint32
	// Port is the peer's port; zero means DefaultPort.
	Port uint16
	// Password enables TCP MD5 signatures (RFC 2385) when not empty.
	Password string
	// HoldTime, KeepaliveTime and ConnectRetry are whole seconds; zero keeps GoBGP's
	// defaults (90 s, 30 s, 120 s).
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	ConnectRetry  time.Duration
	// EBGPMultihop lets an eBGP session cross routers (TTL 255 instead of 1).
	EBGPMultihop bool
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
}

// Established reports whether the session exchanges routes.
func (p PeerState) Established() bool { return p.State == StateEstablished }

// Speaker is one embedded GoBGP server. SetPeers and SetPaths may be called before or
// while Run runs; the sets they give are applied when the server starts, and at once
// while it runs.
type Speaker struct {
	cfg Config

	// mu serialises the reconciliations and guards everything below. It is held across
	// calls into GoBGP so that Run never stops the server under a running reconciliation.
	mu       sync.Mutex
	running  bool
	srv      *server.BgpServer // nil unless Run has started it
	wantPeer map[netip.Addr]Peer
	wantPath map[netip.Prefix]Path
	// havePeer and havePath are what GoBGP holds: an entry is written only after GoBGP
	// accepted it, so a failed change is retried by the next Set call or restart.
	havePeer map[netip.Addr]Peer
	havePath map[netip.Prefix]Path
}

// New validates cfg and returns a speaker that is not yet running.
func New(cfg Config) (*Speaker, error) {
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("router ID %v: must be an IPv4 address", cfg.RouterID)
	}
	if cfg.ASN == 0 {
		return nil, errors.New("ASN must not be 0")
	}
	if cfg.ListenPort < -1 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("listen port %d: must be -1 or 0 to 65535", cfg.ListenPort)
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = DefaultPort
	}
	return &Speaker{
		cfg:      cfg,
		wantPeer: map[netip.Addr]Peer{},
		wantPath: map[netip.Prefix]Path{},
		havePeer: map[netip.Addr]Peer{},
		havePath: map[netip.Prefix]Path{},
	}, nil
}

// Run starts the BGP server, applies the peers and paths set so far, and serves until ctx
// ends; it then closes every session (Cease) and returns once GoBGP's goroutines are gone.
// A Speaker runs at most once.
func (s *Speaker) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("speaker already ran")
	}
	s.running = true
	s.mu.Unlock()

	var opts []server.ServerOption
	if s.cfg.Logger != nil {
		opts = append(opts, server.LoggerOption(s.cfg.Logger, nil))
	}
	srv := server.NewBgpServer(opts...)
	// Serve is GoBGP's event loop; this goroutine is ours and ends when srv.Stop (below,
	// on every path out of Run) makes Serve return.
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
		Asn:        s.cfg.ASN,
		RouterId:   s.cfg.RouterID.String(),
		ListenPort: s.cfg.ListenPort,
	}})
	if err != nil {
		stop()
		return fmt.Errorf("start BGP: %w", err)
	}

	s.mu.Lock()
	s.srv = srv
	err = errors.Join(s.syncPeersLocked(), s.syncPathsLocked())
	s.mu.Unlock()
	if err != nil {
		// Not fatal: the failed entries stay out of have*, so the next Set call retries.
		s.logger().Error("apply initial BGP configuration", "error", err)
	}

	<-ctx.Done()

	s.mu.Lock()
	s.srv = nil
	clear(s.havePeer)
	clear(s.havePath)
	s.mu.Unlock()
	stop()
	return nil
}

func (s *Speaker) logger() *slog.Logger {
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// SetPeers makes the configured peers equal to peers: new ones are added, gone ones are
// deleted, a changed one is deleted and added again (its session restarts); the others are
// not touched. It returns the errors of the changes GoBGP refused; those are retried by
// the next call.
func (s *Speaker) SetPeers(peers []Peer) error {
	want := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		p, err := normalisePeer(p)
		if err != nil {
			return err
		}
		if _, dup := want[p.Address]; dup {
			return fmt.Errorf("peer %v given twice", p.Address)
		}
		want[p.Address] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wantPeer = want
	return s.syncPeersLocked()
}

// SetPaths makes the advertised paths equal to paths: new and changed ones are announced
// (a changed path replaces the old one by implicit withdrawal), gone ones are withdrawn,
// the others are not touched.
func (s *Speaker) SetPaths(paths []Path) error {
	want := make(map[netip.Prefix]Path, len(paths))
	for _, p := range paths {
		if !p.Prefix.IsValid() || p.Prefix != p.Prefix.Masked() {
			return fmt.Errorf("path %v: not a valid prefix without host bits", p.Prefix)
		}
		if p.NextHop.IsValid() && p.NextHop.Is4() != p.Prefix.Addr().Is4() {
			return fmt.Errorf("path %v: next hop %v is of the other address family", p.Prefix, p.NextHop)
		}
		if _, dup := want[p.Prefix]; dup {
			return fmt.Errorf("path %v given twice", p.Prefix)
		}
		p.Communities = slices.Clone(p.Communities)
		p.LargeCommunities = slices.Clone(p.LargeCommunities)
		if p.LocalPref != nil {
			lp := *p.LocalPref
			p.LocalPref = &lp
		}
		want[p.Prefix] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wantPath = want
	return s.syncPathsLocked()
}

// PeerStates returns the session state of every configured peer, sorted by address. Before
// Run has started the server, every peer is reported Idle.
func (s *Speaker) PeerStates() ([]PeerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := map[netip.Addr]SessionState{}
	if s.srv != nil {
		err := s.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.State == nil {
				return
			}
			if a, err := netip.ParseAddr(p.State.NeighborAddress); err == nil {
				got[a] = sessionState(p.State.SessionState)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("list peers: %w", err)
		}
	}
	out := make([]PeerState, 0, len(s.wantPeer))
	for a := range s.wantPeer {
		st, ok := got[a]
		if !ok {
			st = StateIdle
		}
		out = append(out, PeerState{Address: a, State: st})
	}
	slices.SortFunc(out, func(x, y PeerState) int { return x.Address.Compare(y.Address) })
	return out, nil
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
	for name, d := range map[string]time.Duration{
		"hold time": p.HoldTime, "keepalive time": p.KeepaliveTime, "connect retry": p.ConnectRetry,
	} {
		if d < 0 || d%time.Second != 0 {
			return p, fmt.Errorf("peer %v: %s %v: must be whole seconds", p.Address, name, d)
		}
	}
	if p.HoldTime != 0 && p.HoldTime < 3*time.Second {
		return p, fmt.Errorf("peer %v: hold time %v: must be 0 or at least 3s (RFC 4271)", p.Address, p.HoldTime)
	}
	return p, nil
}

// syncPeersLocked applies the difference between wantPeer and havePeer. s.mu is held.
func (s *Speaker) syncPeersLocked() error {
	if s.srv == nil {
		return nil
	}
	var errs []error
	for a, have := range s.havePeer {
		if want, ok := s.wantPeer[a]; ok && want == have {
			continue
		}
		if err := s.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete peer %v: %w", a, err))
			continue
		}
		delete(s.havePeer, a)
	}
	for a, want := range s.wantPeer {
		if _, ok := s.havePeer[a]; ok {
			continue
		}
		if err := s.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: apiPeer(want)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %v: %w", a, err))
			continue
		}
		s.havePeer[a] = want
	}
	return errors.Join(errs...)
}

func apiPeer(p Peer) *api.Peer {
	family := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{Config: &api.AfiSafiConfig{
			Family:  &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST},
			Enabled: true,
		}}
	}
	out := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
		},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.KeepaliveTime),
			ConnectRetry:      seconds(p.ConnectRetry),
		}},
		AfiSafis: []*api.AfiSafi{family(api.Family_AFI_IP), family(api.Family_AFI_IP6)},
	}
	if p.EBGPMultihop {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	return out
}

// seconds converts a duration normalisePeer checked (whole, not negative) for GoBGP.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Second)
}

// syncPathsLocked applies the difference between wantPath and havePath. s.mu is held.
func (s *Speaker) syncPathsLocked() error {
	if s.srv == nil {
		return nil
	}
	var errs []error
	for pfx := range s.havePath {
		if _, ok := s.wantPath[pfx]; ok {
			continue // changed paths are replaced by the add below
		}
		p, err := withdrawal(pfx)
		if err == nil {
			err = s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %v: %w", pfx, err))
			continue
		}
		delete(s.havePath, pfx)
	}
	for pfx, want := range s.wantPath {
		if have, ok := s.havePath[pfx]; ok && pathEqual(have, want) {
			continue
		}
		p, err := announcement(want)
		if err == nil {
			_, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}})
		}
		if err != nil {
			// havePath keeps what was announced before (if anything): it differs from
			// wantPath, so the next call retries, and a later removal still withdraws.
			errs = append(errs, fmt.Errorf("announce %v: %w", pfx, err))
			continue
		}
		s.havePath[pfx] = want
	}
	return errors.Join(errs...)
}

func pathEqual(a, b Path) bool {
	return a.Prefix == b.Prefix && a.NextHop == b.NextHop &&
		slices.Equal(a.Communities, b.Communities) &&
		slices.Equal(a.LargeCommunities, b.LargeCommunities) &&
		(a.LocalPref == nil) == (b.LocalPref == nil) &&
		(a.LocalPref == nil || *a.LocalPref == *b.LocalPref)
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

// announcement builds GoBGP's path for p. An unspecified next hop (0.0.0.0 or ::) is
// GoBGP's way of saying next-hop self: it substitutes each session's local address.
func announcement(p Path) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p.Prefix)
	if err != nil {
		return nil, err
	}
	nh := p.NextHop
	if !nh.IsValid() {
		nh = netip.IPv4Unspecified()
		if p.Prefix.Addr().Is6() {
			nh = netip.IPv6Unspecified()
		}
	}
	fam := family(p.Prefix)
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
	if len(p.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(slices.Clone(p.Communities)))
	}
	if len(p.LargeCommunities) > 0 {
		lcs := make([]*bgp.LargeCommunity, 0, len(p.LargeCommunities))
		for _, c := range p.LargeCommunities {
			lcs = append(lcs, bgp.NewLargeCommunity(c[0], c[1], c[2]))
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
	}
	if p.LocalPref != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*p.LocalPref))
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
	return s
}
