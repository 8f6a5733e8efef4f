package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AddressFamily is a BGP address family (AFI/SAFI) a session carries.
// +kubebuilder:validation:Enum=ipv4-unicast;ipv6-unicast
type AddressFamily string

// The address families a BGPPeer may carry.
const (
	IPv4Unicast AddressFamily = "ipv4-unicast"
	IPv6Unicast AddressFamily = "ipv6-unicast"
)

// SecretReference names a Secret. The speaker reads the key "password".
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Secret; default: the namespace the speaker runs in.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// GracefulRestart asks the peer to keep our routes while the speaker restarts (RFC 4724).
type GracefulRestart struct {
	// Enabled turns graceful restart on for this session.
	Enabled bool `json:"enabled"`
	// RestartTime is how long the peer keeps our routes while the session is down.
	// Default 120s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('4095s')",message="must be between 1s and 4095s (the field is 12 bits of seconds)"
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BGPPeerSpec describes one BGP session that the selected nodes' speakers open.
//
// +kubebuilder:validation:XValidation:rule="!has(self.bfdProfile) || !has(self.ebgpMultihop) || !self.ebgpMultihop",message="bfdProfile with ebgpMultihop: multihop BFD (RFC 5883) is not supported; BFD runs on single-hop sessions"
// +kubebuilder:validation:XValidation:rule="!has(self.holdTime) || !has(self.keepaliveTime) || duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be shorter than holdTime"
type BGPPeerSpec struct {
	// PeerAddress is the router's address.
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	PeerAddress string `json:"peerAddress"`

	// PeerASN is the router's autonomous system number (1 to 4294967295).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN int64 `json:"peerASN"`

	// LocalASN is the nodes' autonomous system number (1 to 4294967295). Equal to peerASN
	// for iBGP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	LocalASN int64 `json:"localASN"`

	// PeerPort is the router's TCP port.
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PeerPort int32 `json:"peerPort,omitempty"`

	// RouterID is the BGP identifier to use; default: the node's IPv4 address.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address"
	RouterID string `json:"routerID,omitempty"`

	// SourceAddress is the local address to open the session from.
	// +optional
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	SourceAddress string `json:"sourceAddress,omitempty"`

	// HoldTime is the BGP hold time proposed to the peer: 0 (no keepalives) or 3s to 65535s.
	// Default 90s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))",message="must be 0s or between 3s and 65535s (RFC 4271)"
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`

	// KeepaliveTime is the interval between keepalives. Default: a third of holdTime.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="must be at least 1s"
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`

	// ConnectTime is the wait between connection attempts. Default 5s. The speaker waits a
	// random 0.75 to 1 times it after a failed attempt, and at least 2s (GoBGP's minimum):
	// 1s behaves as 2s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('65535s')",message="must be between 1s and 65535s"
	ConnectTime *metav1.Duration `json:"connectTime,omitempty"`

	// EBGPMultihop allows an eBGP peer that is more than one hop away (TTL 255).
	// +optional
	EBGPMultihop bool `json:"ebgpMultihop,omitempty"`

	// PasswordSecretRef names a Secret whose key "password" holds the TCP MD5 password
	// (RFC 2385).
	// +optional
	PasswordSecretRef *SecretReference `json:"passwordSecretRef,omitempty"`

	// GracefulRestart keeps routes at the peer across speaker restarts.
	// +optional
	GracefulRestart *GracefulRestart `json:"gracefulRestart,omitempty"`

	// Families the session carries. Empty: IPv4 and IPv6 unicast.
	// +optional
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	Families []AddressFamily `json:"families,omitempty"`

	// NodeSelector chooses the nodes that open this session. Empty or absent: every node.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with operator In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values"
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// BFDProfile names a BFDProfile; the session then runs BFD and goes down as soon as BFD
	// declares the peer unreachable.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	BFDProfile string `json:"bfdProfile,omitempty"`
}

// BGPPeerStatus is what the speakers report of their sessions with the peer.
type BGPPeerStatus struct {
	// Nodes has one entry per node whose speaker is meant to open the session, written by
	// that speaker alone (server-side apply, one field manager per node). A speaker that
	// stops removes its entry; one that crashed leaves it until it runs again.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=5000
	Nodes []BGPSessionStatus `json:"nodes,omitempty"`
	// Established counts the entries of Nodes whose session is Established, as "2/3"
	// (written by the controller).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Established string `json:"established,omitempty"`
}

// BGPSessionStatus is one node's session with the peer.
type BGPSessionStatus struct {
	// Node is the node's name.
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// Session is the BGP session's state: Idle, Connect, Active, OpenSent, OpenConfirm or
	// Established; NotConfigured when the speaker could not set the session up (Message
	// says why).
	// +kubebuilder:validation:MaxLength=32
	Session string `json:"session"`
	// BFD is the BFD session's state (Up, Down, Init, AdminDown) when the peer has a
	// BFD profile.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	BFD string `json:"bfd,omitempty"`
	// Advertised is the number of prefixes the node sends the peer.
	// +optional
	Advertised int64 `json:"advertised,omitempty"`
	// Message says why the session could not be set up.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// LastTransitionTime is when Session last changed.
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
}

// BGPPeer is a router that the speakers open BGP sessions to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=flbpeer,categories=ferrolb
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=`.spec.localASN`
// +kubebuilder:printcolumn:name="BFD",type=string,JSONPath=`.spec.bfdProfile`
// +kubebuilder:printcolumn:name="Established",type=string,JSONPath=`.status.established`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPPeerSpec `json:"spec"`
	// +optional
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}

// BGPAdvertisementSpec says which addresses are advertised to which peers, and with which
// path attributes.
type BGPAdvertisementSpec struct {
	// Pools limits the advertisement to addresses from these IPPools. Empty: every pool.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Pools []string `json:"pools,omitempty"`

	// ServiceSelector chooses the Services advertised. Empty or absent: every Service.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with operator In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values"
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// Peers limits the advertisement to these BGPPeers. Empty: every peer.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Peers []string `json:"peers,omitempty"`

	// NodeSelector chooses the nodes that advertise. Empty or absent: every node.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with operator In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values"
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// Communities are standard communities (RFC 1997), "ASN:value" with both parts 0 to
	// 65535, or a well-known name: no-export, no-advertise, no-export-subconfed, no-peer,
	// blackhole, graceful-shutdown.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=24
	// +kubebuilder:validation:XValidation:rule="self.all(c, c in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer', 'blackhole', 'graceful-shutdown'] || (c.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(c.split(':')[0]) <= 65535 && int(c.split(':')[1]) <= 65535))",message="each community must be ASN:value with both parts 0 to 65535, or a well-known name"
	// +listType=set
	Communities []string `json:"communities,omitempty"`

	// LargeCommunities are large communities (RFC 8092), "global:local1:local2", each part
	// 0 to 4294967295.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && c.split(':').all(p, int(p) <= 4294967295))",message="each large community must be global:local1:local2 with every part 0 to 4294967295"
	// +listType=set
	LargeCommunities []string `json:"largeCommunities,omitempty"`

	// LocalPref is the LOCAL_PREF attribute sent to iBGP peers (ignored for eBGP peers, as
	// RFC 4271 requires).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPref *int64 `json:"localPref,omitempty"`

	// AggregationLength is the prefix length IPv4 addresses are advertised with: 32 (default)
	// advertises each address; shorter advertises the covering prefix once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is the same for IPv6: 128 (default) advertises each address.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// BGPAdvertisement announces Service addresses to BGP peers. Every eligible node advertises
// every selected address, so routers spread traffic over them (ECMP).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv;flbadv,categories=ferrolb
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPAdvertisementSpec `json:"spec"`
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}
