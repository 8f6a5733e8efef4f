package main

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// kubeProxyRules is the nat table kube-proxy's iptables mode writes for services UDP
// LoadBalancer services (externalTrafficPolicy: Cluster), each with one endpoint per backend:
// KUBE-SERVICES matches the address and port and jumps to KUBE-EXT-x, which marks the
// packet for masquerading and jumps to KUBE-SVC-x, which picks an endpoint with
// statistic-mode-random jumps to KUBE-SEP-x, which DNATs; KUBE-POSTROUTING masquerades.
func kubeProxyRules(services, backends int) string {
	var decl, rules strings.Builder
	decl.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	decl.WriteString(":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
	r := func(format string, a ...any) { fmt.Fprintf(&rules, format+"\n", a...) }
	r(`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	r(`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	r(`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`)
	r(`-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000`)
	r(`-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN`)
	r(`-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000`)
	r(`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`)
	for i := range services {
		name := fmt.Sprintf("bench/svc-%d:udp", i)
		svc, ext := chain("KUBE-SVC-", name), chain("KUBE-EXT-", name)
		fmt.Fprintf(&decl, ":%s - [0:0]\n:%s - [0:0]\n", svc, ext)
		r(`-A KUBE-SERVICES -d %s/32 -p udp -m comment --comment "%s loadbalancer IP" -m udp --dport %d -j %s`, vip(i), name, svcPort, ext)
		r(`-A %s -m comment --comment "masquerade traffic for %s external destinations" -j KUBE-MARK-MASQ`, ext, name)
		r(`-A %s -j %s`, ext, svc)
		for k := range backends {
			ep := fmt.Sprintf("%s:%d", backendAddr(k), backendPort+i)
			sep := chain("KUBE-SEP-", name+ep)
			fmt.Fprintf(&decl, ":%s - [0:0]\n", sep)
			if left := backends - k; left > 1 {
				r(`-A %s -m comment --comment "%s -> %s" -m statistic --mode random --probability %.11f -j %s`, svc, name, ep, 1/float64(left), sep)
			} else {
				r(`-A %s -m comment --comment "%s -> %s" -j %s`, svc, name, ep, sep)
			}
			r(`-A %s -m comment --comment "%s" -s %s/32 -j KUBE-MARK-MASQ`, sep, name, backendAddr(k))
			r(`-A %s -m comment --comment "%s" -m udp -p udp -j DNAT --to-destination %s`, sep, name, ep)
		}
	}
	r(`-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`)
	return decl.String() + rules.String() + "COMMIT\n"
}

// chain names a chain as kube-proxy does: a prefix and 16 characters of base32(SHA-256).
func chain(prefix, name string) string {
	h := sha256.Sum256([]byte(name))
	return prefix + base32.StdEncoding.EncodeToString(h[:])[:16]
}

// installIptables loads the rules with variant ("nft" or "legacy") in ns; the returned
// function removes them (for nft, the whole table, so its hooks go too).
func installIptables(ns *netns.NS, variant string, services, backends int) (remove func() error, err error) {
	cmd := ns.Command("iptables-" + variant + "-restore")
	cmd.Stdin = strings.NewReader(kubeProxyRules(services, backends))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("iptables-%s-restore in %s: %w: %s", variant, ns.Name, err, out)
	}
	return func() error {
		if variant == "nft" {
			_, err := ns.Run("nft", "delete", "table", "ip", "nat")
			return err
		}
		return runAll(ns, [][]string{{"iptables-legacy", "-t", "nat", "-F"}, {"iptables-legacy", "-t", "nat", "-X"}})
	}, nil
}
