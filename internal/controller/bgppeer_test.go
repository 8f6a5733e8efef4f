package controller_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// TestPeerStatusPrune: a BGPPeer's status entries of nodes that do not exist go (a node
// deleted without its speaker stopping cleanly), at the controller's start and when a Node
// is deleted later; the entries of existing nodes stay as they are, and status.established
// counts them.
func TestPeerStatusPrune(t *testing.T) {
	ctx := context.Background()
	for _, n := range []string{"prune-here", "prune-later"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := env.Client.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), node) })
	}
	peer := &v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "prune"},
		Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513}}
	if err := env.Client.Create(ctx, peer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), peer) })
	now := metav1.Now()
	for n, session := range map[string]string{"prune-here": "Established", "prune-gone": "Established", "prune-later": "Active"} {
		peer.Status.Nodes = append(peer.Status.Nodes, v1.BGPSessionStatus{Node: n, Session: session, Advertised: 3, LastTransitionTime: now})
	}
	if err := env.Client.Status().Update(ctx, peer); err != nil {
		t.Fatal(err)
	}
	entries := func() string {
		var p v1.BGPPeer
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "prune"}, &p); err != nil {
			return err.Error()
		}
		var out []string
		for _, e := range p.Status.Nodes {
			out = append(out, fmt.Sprintf("%s:%s:%d", e.Node, e.Session, e.Advertised))
		}
		slices.Sort(out)
		return fmt.Sprint(out, " established ", p.Status.Established)
	}

	startController(t)
	poll(t, func() string {
		if got, want := entries(), "[prune-here:Established:3 prune-later:Active:3] established 1/2"; got != want {
			return fmt.Sprintf("entries %s, want %s", got, want)
		}
		return ""
	})
	if err := env.Client.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "prune-later"}}); err != nil {
		t.Fatal(err)
	}
	poll(t, func() string {
		if got, want := entries(), "[prune-here:Established:3] established 1/1"; got != want {
			return fmt.Sprintf("entries %s, want %s", got, want)
		}
		return ""
	})
}
