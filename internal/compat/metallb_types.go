package compat

import (
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
		Communities            []string               `json:"communities"`
		IPAddressPools         []string               `json:"ipAddressPools"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
		Peers                  []string               `json:"peers"`
	} `json:"spec"`
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
		ReceiveInterval  *uint32 `json:"receiveInterval"`
		TransmitInterval *uint32 `json:"transmitInterval"`
		DetectMultiplier *uint32 `json:"detectMultiplier"`
		EchoInterval     *uint32 `json:"echoInterval"`
		EchoMode         *bool   `json:"echoMode"`
		PassiveMode      *bool   `json:"passiveMode"`
		MinimumTTL       *uint32 `json:"minimumTtl"`
	} `json:"spec"`
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
