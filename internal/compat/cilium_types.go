package compat

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Cilium's kinds (cilium.io/v2alpha1 and v2), as far as the conversion reads them. JSON names
// follow Cilium's API; no field is omitempty (see unknownFields).

type ciliumLoadBalancerIPPool struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ServiceSelector   *metav1.LabelSelector `json:"serviceSelector"`
		AllowFirstLastIPs string                `json:"allowFirstLastIPs"`
		// Cidrs is the deprecated name of Blocks (Cilium 1.13 and 1.14).
		Cidrs    []ciliumIPBlock `json:"cidrs"`
		Blocks   []ciliumIPBlock `json:"blocks"`
		Disabled bool            `json:"disabled"`
	} `json:"spec"`
}

type ciliumIPBlock struct {
	Cidr  string `json:"cidr"`
	Start string `json:"start"`
	Stop  string `json:"stop"`
}

type ciliumL2AnnouncementPolicy struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ServiceSelector *metav1.LabelSelector `json:"serviceSelector"`
		NodeSelector    *metav1.LabelSelector `json:"nodeSelector"`
		Interfaces      []string              `json:"interfaces"`
		ExternalIPs     bool                  `json:"externalIPs"`
		LoadBalancerIPs bool                  `json:"loadBalancerIPs"`
	} `json:"spec"`
}

// ciliumBGPPeeringPolicy is BGP control plane v1 (legacy).
type ciliumBGPPeeringPolicy struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		NodeSelector   *metav1.LabelSelector `json:"nodeSelector"`
		VirtualRouters []ciliumVirtualRouter `json:"virtualRouters"`
	} `json:"spec"`
}

type ciliumVirtualRouter struct {
	LocalASN              int64                 `json:"localASN"`
	ExportPodCIDR         *bool                 `json:"exportPodCIDR"`
	PodIPPoolSelector     *metav1.LabelSelector `json:"podIPPoolSelector"`
	ServiceSelector       *metav1.LabelSelector `json:"serviceSelector"`
	ServiceAdvertisements []string              `json:"serviceAdvertisements"`
	Neighbors             []ciliumNeighbor      `json:"neighbors"`
}

type ciliumNeighbor struct {
	PeerAddress              string                 `json:"peerAddress"`
	PeerPort                 *int32                 `json:"peerPort"`
	PeerASN                  int64                  `json:"peerASN"`
	AuthSecretRef            *string                `json:"authSecretRef"`
	EBGPMultihopTTL          *int32                 `json:"eBGPMultihopTTL"`
	ConnectRetryTimeSeconds  *int32                 `json:"connectRetryTimeSeconds"`
	HoldTimeSeconds          *int32                 `json:"holdTimeSeconds"`
	KeepAliveTimeSeconds     *int32                 `json:"keepAliveTimeSeconds"`
	GracefulRestart          *ciliumGracefulRestart `json:"gracefulRestart"`
	Families                 []ciliumFamily         `json:"families"`
	AdvertisedPathAttributes []ciliumPathAttributes `json:"advertisedPathAttributes"`
}

type ciliumGracefulRestart struct {
	Enabled            bool   `json:"enabled"`
	RestartTimeSeconds *int32 `json:"restartTimeSeconds"`
}

type ciliumFamily struct {
	Afi            string                `json:"afi"`
	Safi           string                `json:"safi"`
	Advertisements *metav1.LabelSelector `json:"advertisements"`
}

type ciliumPathAttributes struct {
	SelectorType    string                `json:"selectorType"`
	Selector        *metav1.LabelSelector `json:"selector"`
	Communities     *ciliumCommunities    `json:"communities"`
	LocalPreference *int64                `json:"localPreference"`
}

type ciliumCommunities struct {
	Standard  []string `json:"standard"`
	WellKnown []string `json:"wellKnown"`
	Large     []string `json:"large"`
}

// ciliumBGPClusterConfig, ciliumBGPPeerConfig and ciliumBGPAdvertisement are BGP control
// plane v2.
type ciliumBGPClusterConfig struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		NodeSelector *metav1.LabelSelector `json:"nodeSelector"`
		BGPInstances []ciliumBGPInstance   `json:"bgpInstances"`
	} `json:"spec"`
}

type ciliumBGPInstance struct {
	Name      string             `json:"name"`
	LocalASN  *int64             `json:"localASN"`
	LocalPort *int32             `json:"localPort"`
	Peers     []ciliumBGPPeerRef `json:"peers"`
}

type ciliumBGPPeerRef struct {
	Name          string  `json:"name"`
	PeerAddress   *string `json:"peerAddress"`
	PeerASN       *int64  `json:"peerASN"`
	PeerConfigRef *struct {
		Group string `json:"group"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
	} `json:"peerConfigRef"`
}

type ciliumBGPPeerConfig struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Transport *struct {
			PeerPort *int32 `json:"peerPort"`
		} `json:"transport"`
		Timers *struct {
			ConnectRetryTimeSeconds *int32 `json:"connectRetryTimeSeconds"`
			HoldTimeSeconds         *int32 `json:"holdTimeSeconds"`
			KeepAliveTimeSeconds    *int32 `json:"keepAliveTimeSeconds"`
		} `json:"timers"`
		AuthSecretRef   *string                `json:"authSecretRef"`
		GracefulRestart *ciliumGracefulRestart `json:"gracefulRestart"`
		EBGPMultihop    *int32                 `json:"ebgpMultihop"`
		Families        []ciliumFamily         `json:"families"`
	} `json:"spec"`
}

type ciliumBGPAdvertisement struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Advertisements []ciliumAdvertisement `json:"advertisements"`
	} `json:"spec"`
}

type ciliumAdvertisement struct {
	AdvertisementType string `json:"advertisementType"`
	Service           *struct {
		Addresses []string `json:"addresses"`
	} `json:"service"`
	Selector   *metav1.LabelSelector `json:"selector"`
	Attributes *struct {
		Communities     *ciliumCommunities `json:"communities"`
		LocalPreference *int64             `json:"localPreference"`
	} `json:"attributes"`
}
