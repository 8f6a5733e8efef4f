package compat

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MetalLB's kinds (metallb.io/v1beta1, and v1beta2 for BGPPeer), as far as the conversion
// reads them. JSON names follow MetalLB's API; no field is omitempty, so that decoding and
// encoding again keeps every field the struct knows (see unknownFields).

type metallbIPAddressPool struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta        `json:"metadata"`
	Spec            metallbIPAddressPoolSpec `json:"spec"`
}

type metallbIPAddressPoolSpec struct {
	Addresses         []string                  `json:"addresses"`
	AutoAssign        *bool                     `json:"autoAssign"`
	AvoidBuggyIPs     bool                      `json:"avoidBuggyIPs"`
	ServiceAllocation *metallbServiceAllocation `json:"serviceAllocation"`
}

type metallbServiceAllocation struct {
	Priority           int                    `json:"priority"`
	Namespaces         []string               `json:"namespaces"`
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
}

type metallbL2Advertisement struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		IPAddressPools         []string               `json:"ipAddressPools"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
		Interfaces             []string               `json:"interfaces"`
	} `json:"spec"`
}

type metallbBGPAdvertisement struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		AggregationLength      *int32                 `json:"aggregationLength"`
		AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
		LocalPref              uint32                 `json:"localPref"`
		Communities            []communityRef         `json:"communities"`
		IPAddressPools         []string               `json:"ipAddressPools"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
		Peers                  []string               `json:"peers"`
	} `json:"spec"`
}

// communityRef is a community of a BGPAdvertisement: a value, or the name of an alias that a
// Community object defines.
type communityRef string

// typeHint says what MetalLB takes here. A list of name/value objects is a Community
// object's spec copied into the advertisement: the message says where those go.
func (communityRef) typeHint(got any) string {
	want := "a string: a community (64512:100, or large:64512:1:2) or the name of an alias that a " +
		"Community object defines"
	if m, ok := got.(map[string]any); ok {
		if name, ok := m["name"].(string); ok && name != "" {
			want += fmt.Sprintf("; name/value pairs belong in a Community (kind Community, metallb.io/v1beta1, "+
				"converted in the same run): write the alias's name here, %q", name)
		}
	}
	return want
}

// metallbBGPPeer covers v1beta2 and the older v1beta1, whose fields are a subset.
type metallbBGPPeer struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta  `json:"metadata"`
	Spec            metallbBGPPeerSpec `json:"spec"`
}

type metallbBGPPeerSpec struct {
	MyASN                 uint32                 `json:"myASN"`
	PeerASN               uint32                 `json:"peerASN"`
	DynamicASN            string                 `json:"dynamicASN"`
	PeerAddress           string                 `json:"peerAddress"`
	SourceAddress         string                 `json:"sourceAddress"`
	PeerPort              uint16                 `json:"peerPort"`
	HoldTime              *metav1.Duration       `json:"holdTime"`
	KeepaliveTime         *metav1.Duration       `json:"keepaliveTime"`
	ConnectTime           *metav1.Duration       `json:"connectTime"`
	RouterID              string                 `json:"routerID"`
	NodeSelectors         []metav1.LabelSelector `json:"nodeSelectors"`
	Password              string                 `json:"password"`
	PasswordSecret        metallbSecretReference `json:"passwordSecret"`
	BFDProfile            string                 `json:"bfdProfile"`
	EnableGracefulRestart bool                   `json:"enableGracefulRestart"`
	EBGPMultiHop          bool                   `json:"ebgpMultiHop"`
	VRF                   string                 `json:"vrf"`
	DisableMP             bool                   `json:"disableMP"`
	Interface             string                 `json:"interface"`
}

type metallbSecretReference struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type metallbBFDProfile struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ReceiveInterval  *milliseconds `json:"receiveInterval"`
		TransmitInterval *milliseconds `json:"transmitInterval"`
		DetectMultiplier *uint32       `json:"detectMultiplier"`
		EchoInterval     *milliseconds `json:"echoInterval"`
		EchoMode         *bool         `json:"echoMode"`
		PassiveMode      *bool         `json:"passiveMode"`
		MinimumTTL       *uint32       `json:"minimumTtl"`
	} `json:"spec"`
}

// milliseconds is a BFD interval, a plain number of milliseconds.
type milliseconds uint32

// typeHint says so, and gives the number to write for a duration such as "300ms".
func (milliseconds) typeHint(got any) string {
	want := "a number of milliseconds, such as 300"
	if s, ok := got.(string); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil && d >= time.Millisecond {
			want += fmt.Sprintf(" (for %s, write %d)", s, d.Milliseconds())
		}
	}
	return want
}

type metallbCommunity struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Communities []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"communities"`
	} `json:"spec"`
}
