package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// L2PolicySpec says which Services' addresses are announced on the local segment, by which
// nodes and on which interfaces.
type L2PolicySpec struct {
	// ServiceSelector chooses the Services announced. Empty or absent: every Service.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with operator In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values"
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// NodeSelector chooses the nodes that may announce. Empty or absent: every node.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="matchExpressions with operator In or NotIn need at least one value"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="matchExpressions with operator Exists or DoesNotExist take no values"
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// Interfaces are regular expressions (RE2, matched against the whole name) naming the
	// interfaces to answer ARP and NDP on. Empty: every interface that is up, except loopback.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(r, type('x'.matches(r)) == bool)",message="every entry must be a valid regular expression"
	// +listType=atomic
	Interfaces []string `json:"interfaces,omitempty"`

	// Pools limits the policy to addresses from these IPPools. Empty: every pool.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	Pools []string `json:"pools,omitempty"`

	// LoadBalancerIPs announces the addresses in status.loadBalancer.ingress.
	// +optional
	// +kubebuilder:default=true
	LoadBalancerIPs *bool `json:"loadBalancerIPs,omitempty"`

	// ExternalIPs also announces the addresses in spec.externalIPs of the Services the
	// policy selects: LoadBalancer Services, and ClusterIP (not headless) and NodePort
	// Services, whose traffic kube-proxy carries. Only addresses inside the policy's pools
	// (any IPPool when it names none) are announced: anyone who may create a Service
	// writes spec.externalIPs.
	// +optional
	ExternalIPs bool `json:"externalIPs,omitempty"`
}

// PolicyStatus is what the controller found of an L2Policy or a BGPAdvertisement.
type PolicyStatus struct {
	// Conditions: Valid, True when the speakers use the policy (its message names the
	// nodes it selects, the first 10 by name), False when they ignore it all (its message
	// names the field at fault and says why).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Nodes is how many nodes the policy's nodeSelector selects, less those labelled
	// node.kubernetes.io/exclude-from-external-load-balancers: the nodes whose speakers
	// announce under it. Unset while the policy is invalid.
	// +optional
	Nodes *int32 `json:"nodes,omitempty"`
}

// L2Policy announces Service addresses by answering ARP (IPv4) and NDP (IPv6): for each
// address one eligible node answers, and another takes over when it fails.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=l2policy;flbl2,categories=ferrolb
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Policy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec L2PolicySpec `json:"spec"`
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// L2PolicyList is a list of L2Policies.
//
// +kubebuilder:object:root=true
type L2PolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Policy `json:"items"`
}
