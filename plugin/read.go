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

package plugin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/api/scheme"
	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/fleet"
)

// connectionFlags are kubectl's flags that say how to reach a cluster: --kubeconfig,
// --context, --namespace (-n), --cluster, --user, --server, --token, --as and the rest of
// client-go's clientcmd overrides, which kubectl's own are built on. (cli-runtime's
// ConfigFlags adds nothing the plugin needs but its dependence on kustomize, a third of
// the binary's size.)
type connectionFlags struct {
	rules     *clientcmd.ClientConfigLoadingRules
	overrides clientcmd.ConfigOverrides
}

func newConnectionFlags() *connectionFlags {
	return &connectionFlags{rules: clientcmd.NewDefaultClientConfigLoadingRules()}
}

// add adds the flags to fs.
func (f *connectionFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.rules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "Path to the kubeconfig file to use for CLI requests.")
	clientcmd.BindOverrideFlags(&f.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
}

// session is a connection to the host with the user's flags.
type session struct {
	config    *rest.Config
	mapper    meta.RESTMapper
	client    client.WithWatch
	namespace string
}

// connect reads the kubeconfig as kubectl does (--kubeconfig, else $KUBECONFIG, else
// ~/.kube/config; --context, -n and the other overrides) and makes a client of it, with
// a REST mapper from the server's discovery that expands short names as kubectl does.
func (o *options) connect() (*session, error) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.flags.rules, &o.flags.overrides)
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil)
	s, err := scheme.New()
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: s, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	return &session{config: cfg, mapper: mapper, client: c, namespace: ns}, nil
}

// workloads are the kinds `status` shows, by group and kind.
var workloads = map[schema.GroupKind]string{
	{Group: appsv1.GroupName, Kind: fleet.KindDeployment}:  fleet.KindDeployment,
	{Group: appsv1.GroupName, Kind: fleet.KindStatefulSet}: fleet.KindStatefulSet,
	{Group: appsv1.GroupName, Kind: fleet.KindDaemonSet}:   fleet.KindDaemonSet,
	{Group: batchv1.GroupName, Kind: fleet.KindJob}:        fleet.KindJob,
	{Group: batchv1.GroupName, Kind: fleet.KindCronJob}:    fleet.KindCronJob,
}

// kindOf resolves a resource type as kubectl does, through the server's discovery:
// plural, singular and short names, optionally group-qualified.
func (s *session) kindOf(typ string) (schema.GroupKind, error) {
	gvr, err := s.mapper.ResourceFor(schema.ParseGroupResource(strings.ToLower(typ)).WithVersion(""))
	if err != nil {
		if meta.IsNoMatchError(err) {
			return schema.GroupKind{}, fmt.Errorf("the server doesn't have a resource type %q", typ)
		}
		return schema.GroupKind{}, err
	}
	gvk, err := s.mapper.KindFor(gvr)
	if err != nil {
		return schema.GroupKind{}, err
	}
	return gvk.GroupKind(), nil
}

// workloadKind resolves typ to a kind that vk8s federates, or says which it takes.
func (s *session) workloadKind(typ string) (string, error) {
	gk, err := s.kindOf(typ)
	if err != nil {
		return "", err
	}
	kind, ok := workloads[gk]
	if !ok {
		return "", fmt.Errorf("%q is %s, not a workload vk8s federates: status shows a deployment, statefulset, daemonset, job or cronjob", typ, gk)
	}
	return kind, nil
}

// isPods checks that typ names pods.
func (s *session) isPods(typ string) error {
	gk, err := s.kindOf(typ)
	if err != nil {
		return err
	}
	if gk != (schema.GroupKind{Kind: "Pod"}) {
		return fmt.Errorf("%q is %s: explain takes a pod (pod/NAME)", typ, gk)
	}
	return nil
}

// notInstalled turns the error of reading a vk8s.io kind that the server does not have
// into one that says so.
func notInstalled(err error) error {
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("vk8s is not installed in this cluster (no vk8s.io/v1alpha1 Sites): %w", err)
	}
	return err
}

// sitesInput is what `sites` reads.
type sitesInput struct {
	sites []vk8sv1.Site
	nodes []corev1.Node
	pods  []corev1.Pod
}

// notEnded selects the pods that have not run to their end.
var notEnded = fields.AndSelectors(
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)))

// podPage is how many pods a list asks for at once: a big host lists in pages, as kubectl
// does.
const podPage = 500

// readSites reads the Sites, the virtual nodes and the pods that have not ended.
func (s *session) readSites(ctx context.Context) (*sitesInput, error) {
	in := &sitesInput{}
	var sites vk8sv1.SiteList
	if err := s.client.List(ctx, &sites); err != nil {
		return nil, notInstalled(err)
	}
	in.sites = sites.Items
	var nodes corev1.NodeList
	if err := s.client.List(ctx, &nodes, client.HasLabels{vk8sv1.LabelSite}); err != nil {
		return nil, err
	}
	in.nodes = nodes.Items
	var pods corev1.PodList
	for {
		err := s.client.List(ctx, &pods, client.Limit(podPage), client.Continue(pods.Continue),
			client.MatchingFieldsSelector{Selector: notEnded})
		if err != nil {
			return nil, err
		}
		in.pods = append(in.pods, pods.Items...)
		if pods.Continue == "" {
			return in, nil
		}
	}
}

// readStatus reads a workload of kind and what fleet.Status needs around it, through r
// (the API server, or a cache when watching).
func readStatus(ctx context.Context, r client.Reader, kind, namespace, name string) (fleet.StatusInput, error) {
	in := fleet.StatusInput{Workload: fleet.Workload{Kind: kind, Namespace: namespace, Name: name}}
	w := &in.Workload
	key := client.ObjectKey{Namespace: namespace, Name: name}
	var obj client.Object
	switch kind {
	case fleet.KindDeployment:
		d := &appsv1.Deployment{}
		obj, w.Template = d, &d.Spec.Template
	case fleet.KindStatefulSet:
		sts := &appsv1.StatefulSet{}
		obj, w.Template = sts, &sts.Spec.Template
	case fleet.KindDaemonSet:
		ds := &appsv1.DaemonSet{}
		obj, w.Template = ds, &ds.Spec.Template
	case fleet.KindJob:
		obj = &batchv1.Job{}
	case fleet.KindCronJob:
		obj = &batchv1.CronJob{}
	}
	if err := r.Get(ctx, key, obj); err != nil {
		return in, inNamespace(err, namespace)
	}
	w.Annotations, w.Owners = obj.GetAnnotations(), []types.UID{obj.GetUID()}
	// The pods' owners, the workload or what stands between (ReplicaSets, a CronJob's
	// Job), and the selector to list them by.
	owners := []types.UID{obj.GetUID()}
	var selector *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		selector = o.Spec.Selector
		var sets appsv1.ReplicaSetList
		if err := listSelected(ctx, r, &sets, namespace, selector); err != nil {
			return in, err
		}
		owners = nil
		newest := -1
		for _, rs := range sets.Items {
			if !controlledBy(&rs, o.UID) {
				continue
			}
			owners = append(owners, rs.UID)
			w.Owners = append(w.Owners, rs.UID)
			// The ReplicaSet of the Deployment's current template has the highest revision.
			if rev, err := strconv.Atoi(rs.Annotations["deployment.kubernetes.io/revision"]); err == nil && rev > newest {
				newest, w.Revision = rev, map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]}
			}
		}
	case *appsv1.StatefulSet:
		selector = o.Spec.Selector
		if o.Status.UpdateRevision != "" {
			w.Revision = map[string]string{appsv1.ControllerRevisionHashLabelKey: o.Status.UpdateRevision}
		}
	case *appsv1.DaemonSet:
		selector = o.Spec.Selector
	case *batchv1.Job:
		selector, w.Template = o.Spec.Selector, &o.Spec.Template
	case *batchv1.CronJob:
		// The latest Job says what the CronJob runs now; before its first, its jobTemplate.
		w.Annotations, w.Template = o.Spec.JobTemplate.Annotations, &o.Spec.JobTemplate.Spec.Template
		var jobs batchv1.JobList
		if err := r.List(ctx, &jobs, client.InNamespace(namespace)); err != nil {
			return in, err
		}
		owners = nil
		var latest *batchv1.Job
		for i := range jobs.Items {
			j := &jobs.Items[i]
			if controlledBy(j, o.UID) && (latest == nil || latest.CreationTimestamp.Before(&j.CreationTimestamp)) {
				latest = j
			}
		}
		if latest != nil {
			w.Annotations, owners, selector = latest.Annotations, []types.UID{latest.UID}, latest.Spec.Selector
			w.Owners = append(w.Owners, latest.UID)
		}
	}
	if len(owners) > 0 && selector != nil {
		var pods corev1.PodList
		if err := listSelected(ctx, r, &pods, namespace, selector); err != nil {
			return in, err
		}
		for _, p := range pods.Items {
			if slices.ContainsFunc(owners, func(uid types.UID) bool { return controlledBy(&p, uid) }) {
				w.Pods = append(w.Pods, p)
			}
		}
	}
	var err error
	if in.Sites, in.Nodes, err = sitesAndNodes(ctx, r); err != nil {
		return in, err
	}
	var overrides vk8sv1.OverrideList
	if err := r.List(ctx, &overrides, client.InNamespace(namespace)); err != nil {
		return in, err
	}
	in.Overrides = overrides.Items
	var events corev1.EventList
	if err := r.List(ctx, &events, client.InNamespace(namespace)); err != nil {
		return in, err
	}
	in.Events = events.Items
	return in, nil
}

// readExplain reads a pod and what fleet.Explain needs around it.
func readExplain(ctx context.Context, r client.Reader, namespace, name string) (fleet.ExplainInput, error) {
	in := fleet.ExplainInput{Pod: &corev1.Pod{}}
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, in.Pod); err != nil {
		return in, inNamespace(err, namespace)
	}
	if err := owners(ctx, r, &in); err != nil {
		return in, err
	}
	var vks vk8sv1.VirtualKubernetesList
	if err := r.List(ctx, &vks, client.InNamespace(namespace)); err != nil {
		return in, notInstalled(err)
	}
	if len(vks.Items) > 0 {
		in.VirtualKubernetes = &vks.Items[0]
	}
	var vss vk8sv1.VirtualSiteList
	if err := r.List(ctx, &vss); err != nil {
		return in, err
	}
	in.VirtualSites = vss.Items
	var err error
	if in.Sites, in.Nodes, err = sitesAndNodes(ctx, r); err != nil {
		return in, err
	}
	var overrides vk8sv1.OverrideList
	if err := r.List(ctx, &overrides, client.InNamespace(namespace)); err != nil {
		return in, err
	}
	in.Overrides = overrides.Items
	return in, nil
}

// owners fills the pod's controllers and the annotations admission resolved its
// federation from: a ReplicaSet's Deployment's, a Job's (a CronJob copies its own there),
// a StatefulSet's or a DaemonSet's, else the pod's own. A controller that is gone leaves
// the pod's.
func owners(ctx context.Context, r client.Reader, in *fleet.ExplainInput) error {
	in.Annotations = in.Pod.Annotations
	ref := metav1.GetControllerOfNoCopy(in.Pod)
	if ref == nil {
		return nil
	}
	in.Owners = []fleet.Owner{{Kind: ref.Kind, Name: ref.Name}}
	get := func(name string, obj client.Object) (bool, error) {
		err := r.Get(ctx, client.ObjectKey{Namespace: in.Pod.Namespace, Name: name}, obj)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	var obj client.Object
	switch {
	case ref.Kind == "ReplicaSet" && strings.HasPrefix(ref.APIVersion, "apps/"):
		obj = &appsv1.ReplicaSet{}
	case ref.Kind == fleet.KindStatefulSet && strings.HasPrefix(ref.APIVersion, "apps/"):
		obj = &appsv1.StatefulSet{}
	case ref.Kind == fleet.KindDaemonSet && strings.HasPrefix(ref.APIVersion, "apps/"):
		obj = &appsv1.DaemonSet{}
	case ref.Kind == fleet.KindJob && strings.HasPrefix(ref.APIVersion, "batch/"):
		obj = &batchv1.Job{}
	default:
		return nil
	}
	if ok, err := get(ref.Name, obj); !ok {
		return err
	}
	in.Annotations = obj.GetAnnotations()
	if j, ok := obj.(*batchv1.Job); ok {
		in.IndexedJob = j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion
	}
	up := metav1.GetControllerOfNoCopy(obj)
	switch {
	case up == nil:
	case ref.Kind == "ReplicaSet" && up.Kind == fleet.KindDeployment && strings.HasPrefix(up.APIVersion, "apps/"):
		in.Owners = slices.Insert(in.Owners, 0, fleet.Owner{Kind: up.Kind, Name: up.Name})
		d := &appsv1.Deployment{}
		if ok, err := get(up.Name, d); !ok {
			return err
		}
		in.Annotations = d.Annotations
	case ref.Kind == fleet.KindJob && up.Kind == fleet.KindCronJob:
		in.Owners = slices.Insert(in.Owners, 0, fleet.Owner{Kind: up.Kind, Name: up.Name})
	}
	return nil
}

// sitesAndNodes reads the Sites and the virtual nodes.
func sitesAndNodes(ctx context.Context, r client.Reader) ([]vk8sv1.Site, []corev1.Node, error) {
	var sites vk8sv1.SiteList
	if err := r.List(ctx, &sites); err != nil {
		return nil, nil, notInstalled(err)
	}
	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes, client.HasLabels{vk8sv1.LabelSite}); err != nil {
		return nil, nil, err
	}
	return sites.Items, nodes.Items, nil
}

// listSelected lists the objects of namespace that selector selects.
func listSelected(ctx context.Context, r client.Reader, list client.ObjectList, namespace string, selector *metav1.LabelSelector) error {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return err
	}
	return r.List(ctx, list, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel})
}

// controlledBy says whether uid is obj's controller.
func controlledBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == uid
}

// inNamespace says in which namespace an object was not found, as the API server's
// message does not.
func inNamespace(err error, namespace string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w in namespace %q", err, namespace)
	}
	return err
}
