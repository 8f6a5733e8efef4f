package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BFDProfileSpec holds the timers of a BFD session (RFC 5880). Intervals are milliseconds.
//
// FerroLB runs BFD through GoBGP's implementation: asynchronous mode over single-hop
// sessions. The fields it cannot honour are kept for MetalLB compatibility but rejected
// when set, so that no setting is silently ignored.
//
// +kubebuilder:validation:XValidation:rule="!has(self.echoInterval) || self.echoMode",message="echoInterval needs echoMode: true"
// +kubebuilder:validation:XValidation:rule="!has(self.echoMode) || !self.echoMode",message="echoMode is not supported: FerroLB's BFD (GoBGP's) has no echo function; remove echoMode and echoInterval"
// +kubebuilder:validation:XValidation:rule="!has(self.passiveMode) || !self.passiveMode",message="passiveMode is not supported: FerroLB's BFD (GoBGP's) always sends first"
// +kubebuilder:validation:XValidation:rule="!has(self.minimumTTL) || self.minimumTTL == 254",message="minimumTTL applies to multihop BFD, which FerroLB does not run (single-hop sessions require TTL 255); leave it at 254"
type BFDProfileSpec struct {
	// ReceiveInterval is the minimum interval at which this end can receive control
	// packets (ms).
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	ReceiveInterval int32 `json:"receiveInterval,omitempty"`

	// TransmitInterval is the minimum interval at which this end sends control packets (ms).
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	TransmitInterval int32 `json:"transmitInterval,omitempty"`

	// DetectMultiplier is how many intervals may pass without a packet before the session is
	// declared down.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	DetectMultiplier int32 `json:"detectMultiplier,omitempty"`

	// EchoMode turns on the echo function.
	// +optional
	EchoMode bool `json:"echoMode,omitempty"`

	// EchoInterval is the minimum interval between echo packets (ms).
	// +optional
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	EchoInterval *int32 `json:"echoInterval,omitempty"`

	// PassiveMode waits for the peer to send the first control packet.
	// +optional
	PassiveMode bool `json:"passiveMode,omitempty"`

	// MinimumTTL is the lowest TTL accepted on incoming packets (multihop sessions; a
	// single-hop session always requires 255).
	// +optional
	// +kubebuilder:default=254
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=254
	MinimumTTL int32 `json:"minimumTTL,omitempty"`
}

// BFDProfileStatus is what the controller found of a BFDProfile.
type BFDProfileStatus struct {
	// Conditions: Valid, True when the speakers can use the profile (its message names
	// the BGPPeers that name it, the first 10 by name), False when they cannot (its
	// message names the field at fault and says why; the BGPPeers that name it then open
	// no session).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Peers is how many BGPPeers name the profile in spec.bfdProfile.
	// +optional
	Peers *int32 `json:"peers,omitempty"`
}

// BFDProfile is a set of BFD timers that BGPPeers refer to by name.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bfdprofile,categories=ferrolb
// +kubebuilder:printcolumn:name="Rx",type=integer,JSONPath=`.spec.receiveInterval`
// +kubebuilder:printcolumn:name="Tx",type=integer,JSONPath=`.spec.transmitInterval`
// +kubebuilder:printcolumn:name="Multiplier",type=integer,JSONPath=`.spec.detectMultiplier`
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Peers",type=integer,JSONPath=`.status.peers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BFDProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BFDProfileSpec `json:"spec,omitempty"`
	// +optional
	Status BFDProfileStatus `json:"status,omitempty"`
}

// BFDProfileList is a list of BFDProfiles.
//
// +kubebuilder:object:root=true
type BFDProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BFDProfile `json:"items"`
}
