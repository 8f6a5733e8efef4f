package main

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// memberPort is the speakers' default heartbeat port (speaker.Options.MemberPort).
const memberPort = 7946

// heartbeats records when the IPv4 heartbeats from one address arrive on a node's eth0: the
// last one before a crash starts the peers' detection clock.
type heartbeats struct {
	conn *packet.Conn
	from netip.Addr
	done chan struct{}

	mu   sync.Mutex
	seen []time.Time
}

func sniffHeartbeats(ns *netns.NS, from netip.Addr) (*heartbeats, error) {
	h := &heartbeats{from: from, done: make(chan struct{})}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		// Datagram: frames without their Ethernet header, so each starts with the IP header.
		h.conn, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, nil)
		return err
	}); err != nil {
		return nil, err
	}
	go func() {
		defer close(h.done)
		b := make([]byte, 1500)
		for {
			n, _, err := h.conn.ReadFrom(b)
			if err != nil {
				return // closed
			}
			if h.isHeartbeat(b[:n]) {
				h.mu.Lock()
				h.seen = append(h.seen, time.Now())
				h.mu.Unlock()
			}
		}
	}()
	return h, nil
}

func (h *heartbeats) isHeartbeat(ip []byte) bool {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_UDP {
		return false
	}
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+8 || netip.AddrFrom4([4]byte(ip[12:16])) != h.from {
		return false
	}
	return binary.BigEndian.Uint16(ip[ihl+2:ihl+4]) == memberPort
}

// lastBefore is when the last heartbeat before t arrived.
func (h *heartbeats) lastBefore(t time.Time) (time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var last time.Time
	for _, s := range h.seen {
		if s.Before(t) {
			last = s
		}
	}
	if last.IsZero() {
		return last, errors.New("no heartbeat from the old announcer was seen")
	}
	return last, nil
}

func (h *heartbeats) stop() error {
	err := h.conn.Close()
	<-h.done
	return err
}
