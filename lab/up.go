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

package lab

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/vk8s-io/vk8s/lab/kwokconfig"
	"github.com/vk8s-io/vk8s/siteadm"
	"github.com/vk8s-io/vk8s/storage"
	"github.com/vk8s-io/vk8s/translate"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/vk8s-io/vk8s/api/crds"
	"github.com/vk8s-io/vk8s/api/scheme"
)

// Client returns a client for the host or a site.
func (l *Lab) Client(cluster string) (client.Client, error) {
	cfg, err := l.RESTConfig(cluster)
	if err != nil {
		return nil, err
	}
	return scheme.NewClient(cfg)
}

// Up makes the lab, or brings an existing one to the requested shape; see the package doc.
func (l *Lab) Up(ctx context.Context) error {
	tools, err := l.cfg.Tools.resolve()
	if err != nil {
		return err
	}
	l.tools = tools
	start := time.Now()

	prev, err := l.readState()
	if err != nil {
		prev = state{}
	}
	want := state{Name: l.cfg.Name, Sites: l.cfg.Sites, Nodes: l.cfg.Nodes, Provider: prev.Provider, Webhook: prev.Webhook, NodeIP: prev.NodeIP, WebhookPort: prev.WebhookPort,
		ProviderReplicas: cmp.Or(l.cfg.ProviderReplicas, prev.ProviderReplicas, 1), Providers: prev.Providers}
	if want.ProviderReplicas == 1 {
		want.ProviderReplicas = 0 // as a lab from before the option records it
	}
	if want.Sites == 0 {
		want.Sites = max(prev.Sites, defaultSites)
	}
	if want.Nodes == 0 {
		want.Nodes = defaultNodes
		if prev.Nodes > 0 {
			want.Nodes = prev.Nodes
		}
	}
	if err := os.MkdirAll(l.cfg.Dir, 0o755); err != nil {
		return err
	}
	kn, err := l.siteNodeNetwork(ctx, &want)
	if err != nil {
		return err
	}
	// Recorded first, so Down finds whatever part of the lab a failed Up made.
	if want.WebhookPort == 0 {
		// A lab from before the chart keeps its webhook's port.
		if prev.Webhook != nil {
			want.WebhookPort = prev.Webhook.Port
		} else {
			ports, err := freePorts(1)
			if err != nil {
				return err
			}
			want.WebhookPort = ports[0]
		}
	}
	if err := l.writeState(state{Name: want.Name, Sites: max(want.Sites, prev.Sites), Nodes: want.Nodes, Provider: prev.Provider, Webhook: prev.Webhook, NodeIP: want.NodeIP, WebhookPort: want.WebhookPort,
		ProviderReplicas: max(want.ProviderReplicas, prev.ProviderReplicas), Providers: prev.Providers}); err != nil {
		return err
	}

	advertise := advertiseAddress()
	for _, c := range clusters(want.Sites) {
		role := kwokconfig.Site
		if c == "host" {
			role = kwokconfig.Host
		}
		if err := l.ensureCluster(ctx, c, role, advertise, want.NodeIP); err != nil {
			return err
		}
	}
	for i := want.Sites + 1; i <= prev.Sites; i++ {
		if err := l.deleteCluster(ctx, SiteName(i)); err != nil {
			return err
		}
	}
	if err := l.writeState(want); err != nil {
		return err
	}

	for i := 1; i <= want.Sites; i++ {
		if err := l.setupSite(ctx, i, want.Nodes); err != nil {
			return fmt.Errorf("set up %s: %w", SiteName(i), err)
		}
	}
	if kn != nil {
		ports, err := l.siteKubeletPorts(ctx, want.Sites)
		if err != nil {
			return err
		}
		if err := l.ensureRelay(ctx, *kn, ports); err != nil {
			return err
		}
	}
	if err := l.setupHost(ctx, want.Sites, prev.Sites); err != nil {
		return fmt.Errorf("set up host: %w", err)
	}
	if err := l.installChart(ctx, webhookURL(want.WebhookPort)); err != nil {
		return fmt.Errorf("install charts/vk8s: %w", err)
	}
	creds, err := l.ensureCredentials(ctx)
	if err != nil {
		return err
	}
	if l.cfg.Vk8sBinary != "" {
		if err := l.ensureVk8s(ctx, &want, creds); err != nil {
			return err
		}
		if err := l.waitVirtualNodes(ctx, want.Sites*want.Nodes); err != nil {
			return err
		}
	}
	if err := l.ensureMetricsServer(ctx); err != nil {
		return err
	}
	l.logf("up: host and %d sites x %d nodes in %s", want.Sites, want.Nodes, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// setupSite makes site i's kwok nodes and waits until kwok reports them Ready.
func (l *Lab) setupSite(ctx context.Context, i, nodes int) error {
	site := SiteName(i)
	c, err := l.Client(site)
	if err != nil {
		return err
	}
	// Nodes beyond the requested count go, so `up --nodes` can shrink a lab.
	var list corev1.NodeList
	if err := c.List(ctx, &list); err != nil {
		return err
	}
	for k := range list.Items {
		n := &list.Items[k]
		if n.Annotations[kwokNodeAnnotation] == "" {
			continue
		}
		var j int
		if _, err := fmt.Sscanf(n.Name, "node%d", &j); err == nil && j > nodes {
			if err := c.Delete(ctx, n); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	want := make([]*corev1.Node, 0, nodes)
	for j := 1; j <= nodes; j++ {
		n := siteNode(i, j)
		if l.cfg.NodePods > 0 {
			pods := *resource.NewQuantity(int64(l.cfg.NodePods), resource.DecimalSI)
			n.Status.Capacity[corev1.ResourcePods], n.Status.Allocatable[corev1.ResourcePods] = pods, pods
		}
		want = append(want, n)
	}
	return ensureKwokNodes(ctx, c, want)
}

// ensureKwokNodes creates those of nodes (kwok's) that are missing and waits, up to a
// minute, until every one of them is Ready.
func ensureKwokNodes(ctx context.Context, c client.Client, nodes []*corev1.Node) error {
	for _, n := range nodes {
		if err := c.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, want := range nodes {
			var n corev1.Node
			if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, &n); err != nil || !translate.NodeReady(&n) {
				return false, nil
			}
		}
		return true, nil
	})
}

// setupHost makes the host's own nodes, installs the CRDs and registers every site. The
// CRDs are made here, before the chart takes them over, so that the chart's first install
// can create the WorkloadFlavors too (Helm maps every object of a release before it
// creates any) and the Sites can be registered before.
func (l *Lab) setupHost(ctx context.Context, sites, prevSites int) error {
	c, err := l.Client("host")
	if err != nil {
		return err
	}
	own := make([]*corev1.Node, 0, HostNodes)
	for j := 1; j <= HostNodes; j++ {
		own = append(own, hostNode(j))
	}
	if err := ensureKwokNodes(ctx, c, own); err != nil {
		return fmt.Errorf("the host's own nodes: %w", err)
	}
	for _, ns := range []string{SystemNamespace, SharedNamespace} {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	if err := InstallCRDs(ctx, c); err != nil {
		return err
	}
	// The sites' storage is the host's default: claims that name no class (most charts')
	// are claims on the sites (docs/applications.md).
	sc := storage.Class(true)
	if err := apply(ctx, c, sc, func() { sc.Annotations = storage.Class(true).Annotations }); err != nil {
		return fmt.Errorf("install StorageClass %s: %w", sc.Name, err)
	}
	for i := 1; i <= sites; i++ {
		secret, err := l.registerSite(ctx, c, i)
		if err != nil {
			return err
		}
		want := secret.DeepCopy()
		if err := apply(ctx, c, secret, func() {
			secret.Data = want.Data
			secret.Labels, secret.Annotations = mergeMaps(secret.Labels, want.Labels), mergeMaps(secret.Annotations, want.Annotations)
		}); err != nil {
			return err
		}
		_, site := siteObjects(l.cfg.Name, i, nil)
		spec := site.Spec
		labels := site.Labels
		if err := apply(ctx, c, site, func() {
			site.Spec.KubeconfigSecretRef = spec.KubeconfigSecretRef
			if site.Labels == nil {
				site.Labels = map[string]string{}
			}
			for k, v := range labels {
				site.Labels[k] = v
			}
		}); err != nil {
			return err
		}
	}
	for i := sites + 1; i <= prevSites; i++ {
		secret, site := siteObjects(l.cfg.Name, i, nil)
		for _, obj := range []client.Object{site, secret} {
			if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	vs := allSites()
	return apply(ctx, c, vs, func() {})
}

// apply creates obj or, when it exists, runs mutate on the stored copy and updates it.
func apply(ctx context.Context, c client.Client, obj client.Object, mutate func()) error {
	_, err := controllerutil.CreateOrUpdate(ctx, c, obj, func() error { mutate(); return nil })
	if err != nil {
		return fmt.Errorf("apply %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// InstallCRDs creates or updates the vk8s.io CRDs and waits until each is established.
func InstallCRDs(ctx context.Context, c client.Client) error {
	all, err := crds.All()
	if err != nil {
		return err
	}
	for _, want := range all {
		crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: want.Name}}
		if err := apply(ctx, c, crd, func() {
			// Merged, not replaced: the chart's release marks stay.
			crd.Labels, crd.Annotations = mergeMaps(crd.Labels, want.Labels), mergeMaps(crd.Annotations, want.Annotations)
			crd.Spec = want.Spec
		}); err != nil {
			return err
		}
	}
	for _, want := range all {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, crd); err != nil {
				return false, nil
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				established = established || cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue
			}
			if !established {
				return false, nil
			}
			// The API server's discovery can list the group a moment after the CRD is
			// Established; until the client's mapper finds the kind, creating one fails
			// with "no matches for kind".
			_, err := c.RESTMapper().RESTMapping(schema.GroupKind{Group: want.Spec.Group, Kind: want.Spec.Names.Kind})
			return err == nil, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", want.Name, err)
		}
	}
	return nil
}

// mergeMaps returns into with every key of from set.
func mergeMaps(into, from map[string]string) map[string]string {
	if len(from) == 0 {
		return into
	}
	if into == nil {
		into = map[string]string{}
	}
	maps.Copy(into, from)
	return into
}

// siteTokenTTL is the lifetime of the tokens of the lab's Site kubeconfigs: the lab's
// provider renews them at half, and `lab up` issues a new one when it is due.
const siteTokenTTL = 24 * time.Hour

// registerSite makes site i's Secret as `vk8s site join` does (siteadm.Register): a
// ServiceAccount on the site with exactly the provider's site rights and a kubeconfig of
// its token, the one already in the Secret while it works and is not due. The lab keeps
// the site's admin kubeconfig (`vk8s lab kubeconfig --site`) for itself and the tests.
func (l *Lab) registerSite(ctx context.Context, c client.Client, i int) (*corev1.Secret, error) {
	name := SiteName(i)
	admin, err := l.RESTConfig(name)
	if err != nil {
		return nil, err
	}
	secret, _ := siteObjects(l.cfg.Name, i, nil)
	cur := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(secret), cur); err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	kubeconfig, tok, err := siteadm.Register(ctx, admin, Tenant, name, siteTokenTTL, cur.Data[kubeconfigKey], cur.Annotations)
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	secret, _ = siteObjects(l.cfg.Name, i, kubeconfig)
	secret.Annotations = siteadm.TokenAnnotations(siteadm.AccountName(Tenant, name), tok)
	return secret, nil
}

// flatKubeconfig returns the site's kubeconfig with certificates inlined, as a Secret must
// hold it.
func (l *Lab) flatKubeconfig(cluster string) ([]byte, error) {
	p, err := l.Kubeconfig(cluster)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.LoadFromFile(p)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", p, err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return nil, fmt.Errorf("inline certificates of %s: %w", p, err)
	}
	return clientcmd.Write(*cfg)
}
