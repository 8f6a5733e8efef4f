package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/datapath"
)

// Source is what the handler reads: a *datapath.Datapath.
type Source interface {
	Services() ([]datapath.ServiceInfo, error)
	ReasonCounts() ([]datapath.ReasonCount, error)
	Conntrack(datapath.FlowFilter) (datapath.ConntrackDump, error)
	Attachments() []datapath.Attachment
}

// Names gives the namespace/name of the Kubernetes Service a datapath service belongs to,
// or "" (nil: no names).
type Names func(vip netip.Addr, port uint16, proto datapath.Protocol) string

// The paths the handler serves (GET, JSON).
const (
	pathOverview  = "/v1/overview"  // Overview
	pathService   = "/v1/service"   // ?service=VIP:PORT/PROTO: Service, with flows
	pathConntrack = "/v1/conntrack" // ?client=&vip=&port=&protocol=&backend=&limit=&count=: Conntrack
)

// Handler serves src's state as JSON to callers that are root or the process's own user
// (their credentials come with the connection: see Listen); others get 403.
func Handler(src Source, names Names) http.Handler {
	if names == nil {
		names = func(netip.Addr, uint16, datapath.Protocol) string { return "" }
	}
	h := handler{src: src, names: names}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathOverview, h.overview)
	mux.HandleFunc("GET "+pathService, h.service)
	mux.HandleFunc("GET "+pathConntrack, h.conntrack)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r.Context()) {
			http.Error(w, "ferrolb inspect: only root (or the speaker's user) may read the datapath", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type handler struct {
	src   Source
	names Names
}

func (h handler) overview(w http.ResponseWriter, _ *http.Request) {
	infos, err := h.src.Services()
	if err != nil {
		fail(w, err)
		return
	}
	reasons, err := h.src.ReasonCounts()
	if err != nil {
		fail(w, err)
		return
	}
	o := Overview{Interfaces: []Interface{}, Services: []Service{}}
	for _, a := range h.src.Attachments() {
		o.Interfaces = append(o.Interfaces, Interface{Name: a.Interface, XDPMode: string(a.Mode)})
	}
	for _, si := range infos {
		o.Services = append(o.Services, h.convert(si))
	}
	for _, r := range reasons {
		action := "pass"
		if r.Reason.Dropped() {
			action = "drop"
		}
		o.Reasons = append(o.Reasons, Reason{Reason: r.Reason.String(), Action: action, Packets: r.Packets})
	}
	reply(w, o)
}

func (h handler) service(w http.ResponseWriter, r *http.Request) {
	k, err := ParseServiceKey(r.URL.Query().Get("service"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	infos, err := h.src.Services()
	if err != nil {
		fail(w, err)
		return
	}
	for _, si := range infos {
		if si.VIP != k.VIP || si.Port != k.Port || si.Protocol != k.Proto {
			continue
		}
		s := h.convert(si)
		dump, err := h.src.Conntrack(datapath.FlowFilter{VIP: k.VIP, Port: k.Port, Protocol: k.Proto})
		if err != nil {
			fail(w, err)
			return
		}
		perBackend := map[string]int{}
		for _, f := range dump.Flows {
			if f.Backend.IsValid() {
				perBackend[f.Backend.String()]++
			}
		}
		total := len(dump.Flows)
		s.Flows = &total
		for i := range s.Backends {
			n := perBackend[s.Backends[i].Address]
			s.Backends[i].Flows = &n
		}
		reply(w, s)
		return
	}
	http.Error(w, fmt.Sprintf("the datapath programs no service %s", k), http.StatusNotFound)
}

func (h handler) conntrack(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	dump, err := h.src.Conntrack(datapath.FlowFilter{Client: q.Client, VIP: q.VIP, Port: q.Port, Protocol: q.Proto, Backend: q.Backend})
	if err != nil {
		fail(w, err)
		return
	}
	c := Conntrack{IPv4Entries: dump.IPv4, IPv6Entries: dump.IPv6, Matched: len(dump.Flows), Flows: []Flow{}}
	flows := dump.Flows
	if q.CountOnly {
		flows = nil
	} else if q.Limit > 0 && len(flows) > q.Limit {
		flows = flows[:q.Limit]
	}
	for _, f := range flows {
		fl := Flow{Client: f.Client.String(), Service: f.VIP.String(), Protocol: f.Protocol.String(), Mode: f.Mode.String(),
			NATPort: f.NATPort, State: f.State, IdleSeconds: f.Idle.Seconds()}
		if f.Backend.IsValid() {
			fl.Backend = f.Backend.String()
		}
		c.Flows = append(c.Flows, fl)
	}
	reply(w, c)
}

// values encodes q as the conntrack path's query string.
func (q Query) values() string {
	v := make([]string, 0, 7)
	add := func(k, s string) {
		if s != "" {
			v = append(v, k+"="+s)
		}
	}
	addr := func(a netip.Addr) string {
		if !a.IsValid() {
			return ""
		}
		return a.String()
	}
	add("client", addr(q.Client))
	add("vip", addr(q.VIP))
	if q.Port != 0 {
		add("port", strconv.Itoa(int(q.Port)))
	}
	if q.Proto != 0 {
		add("protocol", q.Proto.String())
	}
	add("backend", addr(q.Backend))
	if q.Limit > 0 {
		add("limit", strconv.Itoa(q.Limit))
	}
	if q.CountOnly {
		add("count", "1")
	}
	return strings.Join(v, "&")
}

func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	var q Query
	var err error
	var errs []error
	if q.Client, err = optAddr(v.Get("client")); err != nil {
		errs = append(errs, fmt.Errorf("client: %w", err))
	}
	if q.VIP, err = optAddr(v.Get("vip")); err != nil {
		errs = append(errs, fmt.Errorf("vip: %w", err))
	}
	if q.Backend, err = optAddr(v.Get("backend")); err != nil {
		errs = append(errs, fmt.Errorf("backend: %w", err))
	}
	port, err := optUint(v.Get("port"), 16)
	if err != nil {
		errs = append(errs, fmt.Errorf("port: %w", err))
	}
	q.Port = uint16(port) //nolint:gosec // parsed as 16 bits
	if q.Proto, err = parseProto(v.Get("protocol")); err != nil {
		errs = append(errs, err)
	}
	limit, err := optUint(v.Get("limit"), 31)
	if err != nil {
		errs = append(errs, fmt.Errorf("limit: %w", err))
	}
	q.Limit = int(limit) //nolint:gosec // parsed as 31 bits
	q.CountOnly = v.Get("count") != ""
	return q, errors.Join(errs...)
}

// convert is a datapath service in the wire format.
func (h handler) convert(si datapath.ServiceInfo) Service {
	s := Service{Name: h.names(si.VIP, si.Port, si.Protocol), Address: si.VIP.String(), Port: si.Port,
		Protocol: si.Protocol.String(), Mode: si.Mode.String(), AffinitySeconds: si.Affinity.Seconds(),
		TableSize: si.TableSize, Packets: si.Packets, Bytes: si.Bytes, Backends: []Backend{}}
	for _, b := range si.Backends {
		nh := "unresolved"
		switch {
		case b.NextHop.Stack:
			nh = "stack"
		case b.NextHop.Interface != "":
			nh = b.NextHop.Interface + " " + b.NextHop.MAC.String()
		}
		s.Backends = append(s.Backends, Backend{Address: b.Addr.String(), Weight: b.Weight, MaglevEntries: b.Entries,
			Draining: b.Draining, NextHop: nh, Packets: b.Packets, Bytes: b.Bytes})
	}
	return s
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// credKey is the context key of a connection's peer credentials.
type credKey struct{}

// allowed reports whether the connection's peer is root or this process's user.
func allowed(ctx context.Context) bool {
	cred, ok := ctx.Value(credKey{}).(*unix.Ucred)
	return ok && (cred.Uid == 0 || int(cred.Uid) == os.Geteuid())
}

// peerCred is the credentials of the process at the other end of a Unix connection.
func peerCred(c net.Conn) *unix.Ucred {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return cred
}

// Listen listens on the Unix socket name, abstract when it starts with @: an abstract
// socket belongs to the calling thread's network namespace, so call it in the node's.
func Listen(name string) (net.Listener, error) {
	ln, err := net.Listen("unix", name)
	if err != nil {
		return nil, fmt.Errorf("inspect socket %s: %w", name, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, passing each connection's peer credentials to
// the handler; it closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, credKey{}, peerCred(c))
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
