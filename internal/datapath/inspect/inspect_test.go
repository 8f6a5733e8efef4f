package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/datapath"
)

func TestParseServiceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.10:80/TCP":     "192.0.2.10:80/TCP",
		"192.0.2.10:80":         "192.0.2.10:80/TCP",
		"192.0.2.10:53/udp":     "192.0.2.10:53/UDP",
		"[2001:db8::10]:53/UDP": "[2001:db8::10]:53/UDP",
		"[::ffff:192.0.2.1]:80": "192.0.2.1:80/TCP",
		"192.0.2.10/TCP":        "",
		"192.0.2.10:0/TCP":      "",
		"192.0.2.10:80/SCTP":    "",
		"web:80":                "",
	} {
		k, err := ParseServiceKey(in)
		if (err == nil) != (want != "") || (err == nil && k.String() != want) {
			t.Errorf("%q: %v, %v; want %q", in, k, err, want)
		}
	}
}

// fake is a Source with canned answers; it records the conntrack filters asked for.
type fake struct {
	filters []datapath.FlowFilter
}

var (
	vip  = netip.MustParseAddr("192.0.2.10")
	be1  = netip.MustParseAddrPort("10.1.0.1:8080")
	be2  = netip.MustParseAddrPort("10.1.0.2:8080")
	cli  = netip.MustParseAddrPort("198.51.100.7:40000")
	mac1 = net.HardwareAddr{2, 0, 0, 0, 1, 1}
)

func (f *fake) Services() ([]datapath.ServiceInfo, error) {
	return []datapath.ServiceInfo{{
		VIP: vip, Port: 80, Protocol: datapath.TCP, Mode: datapath.SNAT, Affinity: time.Hour, TableSize: 251,
		Packets: 30, Bytes: 3000,
		Backends: []datapath.BackendInfo{
			{Addr: be1, Weight: 1, Entries: 126, NextHop: datapath.NextHop{Interface: "eth0", MAC: mac1}, Packets: 20, Bytes: 2000},
			{Addr: be2, Weight: 1, Entries: 125, NextHop: datapath.NextHop{Stack: true}},
			{Addr: netip.MustParseAddrPort("10.1.0.3:8080"), Draining: true, Packets: 10, Bytes: 1000},
		},
	}, {VIP: vip, Port: 81, Protocol: datapath.UDP, Mode: datapath.DSR}}, nil
}

func (f *fake) Attachments() []datapath.Attachment {
	return []datapath.Attachment{{Interface: "eth0", Mode: datapath.XDPNative}, {Interface: "br0", Mode: datapath.XDPGeneric}}
}

func (f *fake) ReasonCounts() ([]datapath.ReasonCount, error) {
	var out []datapath.ReasonCount
	for i, r := range datapath.Reasons() {
		out = append(out, datapath.ReasonCount{Reason: r, Packets: uint64(i)})
	}
	return out, nil
}

func (f *fake) Conntrack(ff datapath.FlowFilter) (datapath.ConntrackDump, error) {
	f.filters = append(f.filters, ff)
	flows := []datapath.Flow{
		{Client: cli, VIP: netip.AddrPortFrom(vip, 80), Protocol: datapath.TCP, Mode: datapath.SNAT, Backend: be1,
			NATPort: 61234, State: datapath.FlowEstablished, Idle: 3 * time.Second},
		{Client: netip.MustParseAddrPort("198.51.100.8:40001"), VIP: netip.AddrPortFrom(vip, 80), Protocol: datapath.TCP,
			Mode: datapath.Stack, Backend: be2},
		{Client: netip.MustParseAddrPort("198.51.100.9:40002"), VIP: netip.AddrPortFrom(vip, 80), Protocol: datapath.TCP,
			Mode: datapath.SNAT, NATPort: 61000},
	}
	return datapath.ConntrackDump{IPv4: 3, IPv6: 1, Flows: flows}, nil
}

// serve serves a fake on an abstract socket of this test's own and returns a client.
func serve(t *testing.T) (*fake, *Client) {
	t.Helper()
	src := &fake{}
	name := fmt.Sprintf("@ferrolb-inspect-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	ln, err := Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Handler(src, func(a netip.Addr, port uint16, _ datapath.Protocol) string {
			if a == vip && port == 80 {
				return "default/web"
			}
			return ""
		}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return src, NewClient(name)
}

// TestOverView: the overview over the socket, as JSON and as text.
func TestOverview(t *testing.T) {
	_, c := serve(t)
	o, err := c.Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Services) != 2 || len(o.Reasons) != len(datapath.Reasons()) ||
		!slices.Equal(o.Interfaces, []Interface{{"eth0", "native"}, {"br0", "generic"}}) {
		t.Fatalf("overview: %+v", o)
	}
	s := o.Services[0]
	if s.Name != "default/web" || s.Key() != "192.0.2.10:80/TCP" || s.Mode != "snat" || s.AffinitySeconds != 3600 ||
		s.TableSize != 251 || len(s.Backends) != 3 || s.Flows != nil {
		t.Fatalf("service: %+v", s)
	}
	if b := s.Backends[0]; b.Address != "10.1.0.1:8080" || b.NextHop != "eth0 02:00:00:00:01:01" || b.MaglevEntries != 126 || b.Packets != 20 {
		t.Errorf("backend: %+v", b)
	}
	if s.Backends[1].NextHop != "stack" || s.Backends[2].NextHop != "unresolved" || !s.Backends[2].Draining {
		t.Errorf("backends: %+v", s.Backends)
	}
	for _, r := range o.Reasons {
		if (r.Action == "drop") != (r.Reason == "snat-ports-exhausted" || r.Reason == "encap-failed") || r.Action == "" {
			t.Errorf("reason %+v", r)
		}
	}
	var text bytes.Buffer
	if err := WriteOverview(&text, "text", o); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	for _, want := range []string{"XDP program on: eth0 (native), br0 (generic)\n", "192.0.2.10:80/TCP", "default/web", "snat (affinity 1h0m0s)", "10.1.0.1:8080",
		"126 (50.2%)", "draining", "192.0.2.10:81/UDP", "none: passed (no-backend)", "snat-ports-exhausted  drop"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q", want)
		}
	}
	var js bytes.Buffer
	if err := WriteOverview(&js, "json", o); err != nil {
		t.Fatal(err)
	}
	var back Overview
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Services) != 2 {
		t.Fatalf("JSON output %s: %v", js.String(), err)
	}
}

// TestService: one Service with its conntrack flows per backend; an unknown one fails.
func TestService(t *testing.T) {
	src, c := serve(t)
	s, err := c.Service(context.Background(), ServiceKey{VIP: vip, Port: 80, Proto: datapath.TCP})
	if err != nil {
		t.Fatal(err)
	}
	if len(src.filters) != 1 || src.filters[0] != (datapath.FlowFilter{VIP: vip, Port: 80, Protocol: datapath.TCP}) {
		t.Fatalf("conntrack filters asked: %+v", src.filters)
	}
	if s.Flows == nil || *s.Flows != 3 || *s.Backends[0].Flows != 1 || *s.Backends[1].Flows != 1 || *s.Backends[2].Flows != 0 {
		t.Fatalf("flows: %+v", s)
	}
	var text bytes.Buffer
	if err := WriteService(&text, "text", s); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	for _, want := range []string{"Maglev table:  251 entries", "Flows:         3 in conntrack", "50.2%", "49.8%", "100.0%"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q", want)
		}
	}
	if _, err := c.Service(context.Background(), ServiceKey{VIP: vip, Port: 443, Proto: datapath.TCP}); err == nil ||
		!strings.Contains(err.Error(), "no service 192.0.2.10:443/TCP") {
		t.Fatalf("an unknown service: %v", err)
	}
}

// TestConntrack: the query's fields reach the datapath's filter; limit and count.
func TestConntrack(t *testing.T) {
	src, c := serve(t)
	q, err := QueryFlags{Client: "198.51.100.7", VIP: "192.0.2.10", Port: 80, Protocol: "tcp", Backend: "10.1.0.1", Limit: 2}.Query()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := c.Conntrack(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := datapath.FlowFilter{Client: cli.Addr(), VIP: vip, Port: 80, Protocol: datapath.TCP, Backend: be1.Addr()}
	if len(src.filters) != 1 || src.filters[0] != want {
		t.Fatalf("filter %+v, want %+v", src.filters, want)
	}
	if ct.IPv4Entries != 3 || ct.IPv6Entries != 1 || ct.Matched != 3 || len(ct.Flows) != 2 {
		t.Fatalf("conntrack: %+v", ct)
	}
	f := ct.Flows[0]
	if f.Client != cli.String() || f.Service != "192.0.2.10:80" || f.Backend != be1.String() || f.NATPort != 61234 ||
		f.State != "established" || f.IdleSeconds != 3 || f.Mode != "snat" {
		t.Errorf("flow %+v", f)
	}
	if ct.Flows[1].Mode != "stack" || ct.Flows[1].NATPort != 0 {
		t.Errorf("flow %+v", ct.Flows[1])
	}
	var text bytes.Buffer
	if err := WriteConntrack(&text, "text", ct); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	for _, want := range []string{"3 IPv4 and 1 IPv6 entries; 3 match", "established", "3s", "... and 1 more"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q", want)
		}
	}
	ct, err = c.Conntrack(context.Background(), Query{CountOnly: true})
	if err != nil || ct.Matched != 3 || len(ct.Flows) != 0 {
		t.Fatalf("count only: %+v, %v", ct, err)
	}
	if _, err := (QueryFlags{Client: "nope", Protocol: "sctp", Limit: -1}).Query(); err == nil ||
		!strings.Contains(err.Error(), "--client") || !strings.Contains(err.Error(), "--protocol") || !strings.Contains(err.Error(), "--limit") {
		t.Fatalf("bad flags: %v", err)
	}
}

// TestOnlyRoot: the handler answers root and its own user only, by the credentials the
// connection carries; a connection's credentials are its peer's.
func TestOnlyRoot(t *testing.T) {
	h := Handler(&fake{}, nil)
	for uid, want := range map[uint32]int{0: http.StatusOK, uint32(os.Geteuid()): http.StatusOK, 65534: http.StatusForbidden} {
		r := httptest.NewRequest(http.MethodGet, pathOverview, nil)
		r = r.WithContext(context.WithValue(r.Context(), credKey{}, &unix.Ucred{Uid: uid}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("uid %d: %d, want %d", uid, w.Code, want)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, pathOverview, nil))
	if w.Code != http.StatusForbidden {
		t.Errorf("no credentials: %d", w.Code)
	}
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	if cred := peerCred(a); cred == nil || int(cred.Uid) != os.Geteuid() || int(cred.Pid) != os.Getpid() {
		t.Fatalf("peer credentials %+v", cred)
	}
}

func socketPair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}
