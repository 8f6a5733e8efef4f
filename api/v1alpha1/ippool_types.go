package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPBlock is one contiguous set of addresses: either a CIDR, or an inclusive start/stop range
// of one family.
//
// The CEL rules check all that can be checked without comparing IPv6 addresses numerically
// (CEL has no such function); an IPv6 range whose start is above its stop is reported in the
// pool's Ready condition instead.
//
// +kubebuilder:validation:XValidation:rule="has(self.cidr) != (has(self.start) || has(self.stop))",message="a block is either a cidr or a start/stop range, not both and not neither"
// +kubebuilder:validation:XValidation:rule="has(self.start) == has(self.stop)",message="start and stop go together: a range needs both"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() == ip(self.stop).family()",message="start and stop must be of one address family"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() != 4 || ip(self.stop).family() != 4 || (int(self.start.split('.')[0]) * 16777216 + int(self.start.split('.')[1]) * 65536 + int(self.start.split('.')[2]) * 256 + int(self.start.split('.')[3]) * 1) <= (int(self.stop.split('.')[0]) * 16777216 + int(self.stop.split('.')[1]) * 65536 + int(self.stop.split('.')[2]) * 256 + int(self.stop.split('.')[3]) * 1)",message="start must not be above stop"
type IPBlock struct {
	// CIDR is a network such as 192.0.2.0/24 or 2001:db8:1::/64; every address in it may be
	// handed out (but see avoidBuggyIPs).
	// +optional
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 192.0.2.0/24 or 2001:db8::/64"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="has host bits set: write the network address (for example 192.0.2.0/24, not 192.0.2.1/24)"
	CIDR string `json:"cidr,omitempty"`

	// Start is the first address of a range, inclusive.
	// +optional
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	Start string `json:"start,omitempty"`

	// Stop is the last address of a range, inclusive.
	// +optional
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	Stop string `json:"stop,omitempty"`
}

// IPPoolSpec says which addresses a pool holds and which Services may have them.
type IPPoolSpec struct {
	// Blocks are the pool's addresses, IPv4 and IPv6 mixed as you like.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	// +listType=atomic
	Blocks []IPBlock `json:"blocks"`

	// AutoAssign lets the controller give this pool's addresses to Services that did not ask
	// for this pool or an address in it. With false, only explicit requests are served.
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, which some old client stacks
	// treat as broadcast addresses.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// Disabled stops new allocations from this pool. Services that already hold one of its
	// addresses keep it.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// ServiceSelector limits the pool to Services whose labels match. The pseudo-labels
	// io.kubernetes.service.namespace and io.kubernetes.service.name match a Service's
	// namespace and name. Empty or absent: every Service.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with operator In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values"
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// Namespaces limits the pool to Services in these namespaces. Empty: every namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`

	// Priority orders the pools that match a Service: the lowest number is tried first, and
	// pools without a priority come after all pools with one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Priority *int32 `json:"priority,omitempty"`

	// MaxAddressesPerService is how many addresses of one family a Service may hold when it
	// requests this pool's addresses by annotation (ferrolb.io/ips and the MetalLB and
	// Cilium equivalents): 1 to 64, default 1. A Service is given the first requested
	// address of each family it can have, further ones only while the pool of the next one
	// allows, and is told why the rest are refused. Raise it for Services that need several
	// addresses of one family (Cilium gives as many as are requested); automatic
	// assignment gives one per family whatever it says.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	MaxAddressesPerService *int32 `json:"maxAddressesPerService,omitempty"`
}

// AddressCount is how many addresses of one family a pool holds. Total and Free are decimal
// strings because an IPv6 pool can hold more addresses than an int64 counts.
type AddressCount struct {
	// Total is the number of addresses the pool can hand out.
	Total string `json:"total"`
	// Used is the number of addresses held by Services.
	Used int64 `json:"used"`
	// Free is Total minus Used.
	Free string `json:"free"`
}

// IPPoolStatus is what the controller observed of a pool.
type IPPoolStatus struct {
	// Conditions: Ready (the pool is valid and serves allocations) and Conflict (it overlaps
	// another pool; the overlapping addresses are handed out by neither).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// IPv4 counts the pool's IPv4 addresses.
	// +optional
	IPv4 *AddressCount `json:"ipv4,omitempty"`

	// IPv6 counts the pool's IPv6 addresses.
	// +optional
	IPv6 *AddressCount `json:"ipv6,omitempty"`

	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// IPPool is a set of addresses that LoadBalancer Services may be given.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=flbpool,categories=ferrolb
// +kubebuilder:printcolumn:name="Disabled",type=boolean,JSONPath=`.spec.disabled`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="IPv4 used",type=integer,JSONPath=`.status.ipv4.used`
// +kubebuilder:printcolumn:name="IPv4 free",type=string,JSONPath=`.status.ipv4.free`
// +kubebuilder:printcolumn:name="IPv6 used",type=integer,JSONPath=`.status.ipv6.used`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
//
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
