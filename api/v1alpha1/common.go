package v1alpha1

// Condition types and reasons shared by the kinds of this package.
const (
	// ConditionReady says the object is in effect: a Site's cluster answers and has Ready
	// nodes, a VirtualSite's selector resolved, a VirtualKubernetes' namespaces exist.
	ConditionReady = "Ready"
	// ConditionConnected says vk8s reached the Site's API server with its credentials.
	ConditionConnected = "Connected"
)

// Annotations users write on workloads (compatible with existing vK8s manifests).
const (
	// AnnotationVirtualSites lists the workload's virtual-sites: "ns1/vs1, shared/vs2".
	AnnotationVirtualSites = "ves.io/virtual-sites"
	// AnnotationOverrides lists the workload's Overrides in order: "o1, o2".
	AnnotationOverrides = "ves.io/overrides"
	// AnnotationWorkloadFlavor names the workload's WorkloadFlavor.
	AnnotationWorkloadFlavor = "ves.io/workload-flavor"
)

// Labels and annotations vk8s writes.
const (
	// LabelSite names the site of a virtual node or of a pod.
	LabelSite = "vk8s.io/site"
	// LabelSiteNode names the real node of the site that a PerNode virtual node stands for.
	LabelSiteNode = "vk8s.io/site-node"
	// LabelOverride names the Override applied to a pod.
	LabelOverride = "vk8s.io/override"
	// AnnotationReplicasPerSite holds R, the per-site replica count of a workload.
	AnnotationReplicasPerSite = "vk8s.io/replicas-per-site"
)

// SecretKeyReference names one key of a Secret.
type SecretKeyReference struct {
	// namespace of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`

	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the Secret's data that holds the value.
	// +optional
	// +kubebuilder:default=kubeconfig
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}
