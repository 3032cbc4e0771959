/*
Copyright The vk8s Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package kubeletapi

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vk8s-io/vk8s/sitereg"
)

// Resolver tells the kubelet API where host pods and virtual nodes live on the sites. The
// pod lifecycle code implements it from its caches. Every method is called on the request
// path, concurrently, and must not call a site: answer from memory.
//
// Errors are classified with github.com/virtual-kubelet/virtual-kubelet/errdefs as the
// outermost wrapper (errdefs.IsNotFound follows Cause(), not Unwrap()): errdefs.NotFound
// becomes 404, errdefs.InvalidInput 400, anything else 500 (a site that is not connected,
// for instance, wrapping sitereg.ErrSiteNotConnected).
type Resolver interface {
	// Pod returns where host pod namespace/name runs. It returns errdefs.NotFound when the
	// host pod is unknown, is not bound to a virtual node of this provider, or has no pod
	// on its site yet.
	Pod(ctx context.Context, namespace, name string) (*PodTarget, error)

	// Node returns what virtual node name stands for. It returns errdefs.NotFound when
	// this provider does not run a virtual node of that name.
	Node(ctx context.Context, name string) (*NodeTarget, error)

	// NodePods returns the host pods bound to virtual node name (the kubelet's /pods). The
	// pods are shared: the caller does not modify them. An unknown node has no pods.
	NodePods(ctx context.Context, name string) ([]*corev1.Pod, error)

	// HostPod returns the host pod that the pod namespace/name of site runs for, and false
	// when that site pod is not one of this host's (another tenant's, or the site's own).
	// Implementations read the site pod's vk8s.io/tenant, vk8s.io/host-namespace and
	// vk8s.io/host-pod-uid labels; the host pod has the site pod's name.
	HostPod(site, namespace, name string) (HostPod, bool)

	// SitePod returns the pod namespace/name of site as the provider's cache of the site's
	// pods last saw it, and false when the cache does not hold it (deleted, not one of this
	// host's). The pod is shared: the caller does not modify it. Exec and attach read it
	// every second or so while they stream, to end when the container has terminated.
	SitePod(site, namespace, name string) (*corev1.Pod, bool)
}

// PodTarget is where a host pod runs. Its fields are shared and not modified.
type PodTarget struct {
	// Node is the virtual node the host pod is bound to.
	Node string
	// Site is the connection of the pod's site (sitereg.Registry.Get).
	Site *sitereg.Conn
	// Namespace and Name are the site pod's.
	Namespace string
	Name      string
	// SiteNode is the real node the site pod is scheduled to; empty while it is not.
	SiteNode string
}

// NodeTarget is what a virtual node stands for. Its fields are shared and not modified.
type NodeTarget struct {
	// Site is the connection of the virtual node's site.
	Site *sitereg.Conn
	// SiteNodes are the site's real nodes the virtual node stands for: one in PerNode
	// mode, all the site's nodes in Aggregate mode.
	SiteNodes []string
}

// HostPod names a host pod.
type HostPod struct {
	Namespace string
	Name      string
	UID       types.UID
}
