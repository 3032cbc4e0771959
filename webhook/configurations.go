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

package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/overrides"
	"github.com/vk8s-io/vk8s/translate"
	"github.com/vk8s-io/vk8s/webhook/certs"
)

// CEL conditions of the webhook configurations: the API server evaluates them before it
// calls the webhook, so requests that need no answer never leave it.
const (
	// celNotOwnedByWorkload skips ReplicaSets of Deployments and Jobs of CronJobs: their
	// owner was admitted, and its controller writes them often.
	celNotOwnedByWorkload = `!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, ` +
		`(r.kind == 'Deployment' && r.apiVersion.startsWith('apps/')) || (r.kind == 'CronJob' && r.apiVersion.startsWith('batch/')))`
	celFederatedAnnotation = `has(object.metadata.annotations) && (` +
		`'` + vk8sv1.AnnotationVirtualSites + `' in object.metadata.annotations || ` +
		`'` + vk8sv1.AnnotationOverrides + `' in object.metadata.annotations || ` +
		`'` + vk8sv1.AnnotationWorkloadFlavor + `' in object.metadata.annotations)`
	celNotControlled = `!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)`
)

// celNotBuiltinFlavor skips the built-in WorkloadFlavors as overrides.BuiltinFlavors makes
// them, which are valid by construction: the chart installs them in the same release as
// this configuration, before any webhook replica can answer (and the lab's chart runs the
// webhook outside the cluster, after the install). Any other value is checked.
func celNotBuiltinFlavor() string {
	var terms []string
	for _, f := range overrides.BuiltinFlavors() {
		terms = append(terms, fmt.Sprintf("(object.metadata.name == '%s' && string(object.spec.cpu) == '%s' && string(object.spec.memory) == '%s')",
			f.Name, f.Spec.CPU.String(), f.Spec.Memory.String()))
	}
	return "!(" + strings.Join(terms, " || ") + ")"
}

// Configurations returns the webhook configurations the process registers, both named
// cfg.ConfigurationName, with caBundle. Mutation and the HorizontalPodAutoscaler check
// select vK8s namespaces only (vk8sv1.LabelVirtualKubernetes) and fail closed there; the vk8s.io
// kinds are checked everywhere; the check that refuses vK8s annotations outside vK8s
// namespaces runs only for objects that carry one, and fails open.
func Configurations(cfg Config, caBundle []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	cfg.defaults()
	inVK8s := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: vk8sv1.LabelVirtualKubernetes, Operator: metav1.LabelSelectorOpExists}}}
	outsideVK8s := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: vk8sv1.LabelVirtualKubernetes, Operator: metav1.LabelSelectorOpDoesNotExist}}}
	everywhere := &metav1.LabelSelector{}
	timeout := ptr.To(int32(cfg.Timeout / time.Second))
	create, update, del := admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete
	rule := func(ops []admissionregistrationv1.OperationType, group, version string, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{group}, APIVersions: []string{version}, Resources: resources,
				Scope: ptr.To(admissionregistrationv1.NamespacedScope),
			},
		}
	}
	workloads := func(ops ...admissionregistrationv1.OperationType) []admissionregistrationv1.RuleWithOperations {
		return []admissionregistrationv1.RuleWithOperations{
			rule(ops, "apps", "v1", "deployments", "statefulsets", "daemonsets", "replicasets"),
			rule(ops, "batch", "v1", "jobs", "cronjobs"),
		}
	}
	cond := func(name, expr string) admissionregistrationv1.MatchCondition {
		return admissionregistrationv1.MatchCondition{Name: name, Expression: expr}
	}
	meta := metav1.ObjectMeta{Name: cfg.ConfigurationName, Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}}
	fail, ignore := ptr.To(admissionregistrationv1.Fail), ptr.To(admissionregistrationv1.Ignore)
	none, noneOnDryRun := ptr.To(admissionregistrationv1.SideEffectClassNone), ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun)
	mutating := func(name, path string, rules []admissionregistrationv1.RuleWithOperations, side *admissionregistrationv1.SideEffectClass, conds ...admissionregistrationv1.MatchCondition) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name: name, ClientConfig: cfg.webhookClientConfig(path, caBundle), Rules: rules,
			FailurePolicy: fail, MatchPolicy: ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector: inVK8s, ObjectSelector: &metav1.LabelSelector{}, SideEffects: side,
			TimeoutSeconds: timeout, AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy: ptr.To(admissionregistrationv1.NeverReinvocationPolicy), MatchConditions: conds,
		}
	}
	validating := func(name, path string, rules []admissionregistrationv1.RuleWithOperations, ns *metav1.LabelSelector,
		policy *admissionregistrationv1.FailurePolicyType, side *admissionregistrationv1.SideEffectClass, conds ...admissionregistrationv1.MatchCondition,
	) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name: name, ClientConfig: cfg.webhookClientConfig(path, caBundle), Rules: rules,
			FailurePolicy: policy, MatchPolicy: ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector: ns, ObjectSelector: &metav1.LabelSelector{}, SideEffects: side,
			TimeoutSeconds: timeout, AdmissionReviewVersions: []string{"v1"}, MatchConditions: conds,
		}
	}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: *meta.DeepCopy(),
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			mutating("workloads.mutate.vk8s.io", pathWorkloads, workloads(create, update), none,
				cond("not-owned-by-a-workload", celNotOwnedByWorkload)),
			// NoneOnDryRun: a scale write is followed by a refresh of vk8s.io/replicas-per-site.
			mutating("scale.mutate.vk8s.io", pathScale, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{update}, "apps", "v1", "deployments/scale", "statefulsets/scale", "replicasets/scale"),
			}, noneOnDryRun),
			mutating("pods.mutate.vk8s.io", pathPods, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{create}, "", "v1", "pods"),
			}, none),
			mutating("persistentvolumeclaims.mutate.vk8s.io", pathClaims, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{create}, "", "v1", "persistentvolumeclaims"),
			}, none),
		},
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: *meta.DeepCopy(),
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			// NoneOnDryRun: an admitted VirtualKubernetes labels its namespace at once.
			validating("virtualkubernetes.validate.vk8s.io", pathVirtualKubernetes, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{create, update, del}, vk8sv1.GroupVersion.Group, vk8sv1.GroupVersion.Version, "virtualkubernetes"),
			}, everywhere, fail, noneOnDryRun),
			validating("overrides.validate.vk8s.io", pathOverrides, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{create, update}, vk8sv1.GroupVersion.Group, vk8sv1.GroupVersion.Version, "overrides"),
			}, everywhere, fail, none),
			validating("workloadflavors.validate.vk8s.io", pathFlavors, []admissionregistrationv1.RuleWithOperations{func() admissionregistrationv1.RuleWithOperations {
				r := rule([]admissionregistrationv1.OperationType{create, update}, vk8sv1.GroupVersion.Group, vk8sv1.GroupVersion.Version, "workloadflavors")
				r.Scope = ptr.To(admissionregistrationv1.ClusterScope)
				return r
			}()}, everywhere, fail, none, cond("not-a-built-in-flavor", celNotBuiltinFlavor())),
			validating("horizontalpodautoscalers.validate.vk8s.io", pathAutoscalers, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{create, update}, "autoscaling", "v2", "horizontalpodautoscalers"),
			}, inVK8s, fail, none),
			validating("rolebindings.validate.vk8s.io", pathRoleBindings, []admissionregistrationv1.RuleWithOperations{
				rule([]admissionregistrationv1.OperationType{create, update}, "rbac.authorization.k8s.io", "v1", "rolebindings"),
			}, inVK8s, fail, none),
			validating("outside.validate.vk8s.io", pathOutside, append(workloads(create, update),
				rule([]admissionregistrationv1.OperationType{create, update}, "", "v1", "pods")),
				outsideVK8s, ignore, none,
				cond("has-a-vk8s-annotation", celFederatedAnnotation), cond("not-controlled", celNotControlled)),
		},
	}
	return m, v
}

// KindPolicy returns the ValidatingAdmissionPolicy, and its binding, both named
// cfg.ConfigurationName, that refuse to create in a vK8s namespace an object of a kind
// translate.NamespaceKinds does not list (SPEC §4, "Other objects": never silently
// host-only), naming the kind and the kinds a vK8s namespace holds. The API server
// evaluates it itself: it holds while no webhook replica answers.
func KindPolicy(cfg Config) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	cfg.defaults()
	var allowed, kinds, hostOnly []string
	// The kinds a vK8s namespace holds are excluded from the match: the API server then
	// evaluates nothing for them. A CEL evaluation converts the whole object for its
	// activation, which took an eighth of the host API server's CPU in 20 pod creates at
	// once (docs/performance.md); the expression below still names them, should an exclusion
	// not match.
	var exclude []admissionregistrationv1.NamedRuleWithOperations
	for _, k := range translate.NamespaceKinds {
		allowed = append(allowed, strconv.Quote(k.Group+"/"+k.Resource))
		i := slices.IndexFunc(exclude, func(r admissionregistrationv1.NamedRuleWithOperations) bool { return r.APIGroups[0] == k.Group })
		if i < 0 {
			exclude = append(exclude, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{k.Group}, APIVersions: []string{"*"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}})
			i = len(exclude) - 1
		}
		exclude[i].Resources = append(exclude[i].Resources, k.Resource)
		switch {
		case k.Fate != translate.FateHostOnly:
			kinds = append(kinds, k.Kind)
		case !slices.Contains(hostOnly, k.Kind):
			hostOnly = append(hostOnly, k.Kind)
		}
	}
	message := fmt.Sprintf(": vk8s runs a vK8s namespace on its sites, and this kind would stay on the host unseen. "+
		"A vK8s namespace holds %s (on the sites) and %s (on the host); docs/applications.md says what becomes of each. "+
		"Create it in a namespace without a VirtualKubernetes, or run it with what these kinds offer "+
		"(an Ingress: a Service of type LoadBalancer or NodePort on every site)",
		strings.Join(kinds, ", "), strings.Join(hostOnly, ", "))
	meta := metav1.ObjectMeta{Name: cfg.ConfigurationName, Labels: map[string]string{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}}
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: *meta.DeepCopy(),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: vk8sv1.LabelVirtualKubernetes, Operator: metav1.LabelSelectorOpExists}}},
				ObjectSelector: &metav1.LabelSelector{},
				MatchPolicy:    ptr.To(admissionregistrationv1.Equivalent),
				// "*" is every resource and no subresource (pods/eviction, .../token).
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"},
						Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
				}}},
				ExcludeResourceRules: exclude,
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression:        "(request.resource.group + '/' + request.resource.resource) in [" + strings.Join(allowed, ", ") + "]",
				MessageExpression: "request.kind.kind + ' (' + (request.kind.group == '' ? 'core' : request.kind.group) + '/' + request.kind.version + ') cannot be created in vK8s namespace ' + request.namespace + " + strconv.Quote(message),
				Reason:            ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: *meta.DeepCopy(),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	return policy, binding
}

// webhookClientConfig returns the clientConfig of the handler at path.
func (cfg *Config) webhookClientConfig(path string, caBundle []byte) admissionregistrationv1.WebhookClientConfig {
	if cfg.Service != nil {
		port := cfg.Service.Port
		if port == 0 {
			port = 443
		}
		return admissionregistrationv1.WebhookClientConfig{
			Service: &admissionregistrationv1.ServiceReference{
				Namespace: cfg.Service.Namespace, Name: cfg.Service.Name, Path: ptr.To(path), Port: ptr.To(port),
			},
			CABundle: caBundle,
		}
	}
	u, _ := url.Parse(cfg.URL)
	u.Path = strings.TrimRight(u.Path, "/") + path
	return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(u.String()), CABundle: caBundle}
}

// The two configurations named --configuration-name (vk8s-webhook stands for the chart's
// name), listed and watched by name, their CA bundle written (inject-ca). Register mode,
// for a webhook run without the chart, also needs create on both kinds and get, list,
// watch, create and update of validatingadmissionpolicies and
// validatingadmissionpolicybindings: the chart does not grant them (install.md).
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;list;watch;update,resourceNames=vk8s-webhook

// registrar keeps the process's own webhook configurations as Configurations says, with
// the current CA bundle; it never reads or writes any other configuration.
type registrar struct {
	cfg    *Config
	client client.Client
	log    logr.Logger

	mu     sync.Mutex
	bundle []byte
	ready  atomic.Bool
}

// publish is the Authority's Publish: it writes bundle into the configurations.
func (r *registrar) publish(ctx context.Context, bundle []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bundle = bundle
	if err := r.ensureLocked(ctx); err != nil {
		return err
	}
	r.ready.Store(true)
	return nil
}

// readyCheck is the readiness check: ready once the configurations carry the bundle.
func (r *registrar) readyCheck(*http.Request) error {
	if !r.ready.Load() {
		return errors.New("the webhook configurations are not registered yet")
	}
	return nil
}

// run waits for the cache and the HTTPS server, registers the configurations or writes the
// bundle into them, and then rotates the certificates (self-managed, the Authority) or
// re-reads the CA file, repairing the configurations every ResyncInterval, until ctx ends.
// With ConfigurationsNone it only waits: someone else writes the bundle.
func (r *registrar) run(ctx context.Context, mgr manager.Manager, authority *certs.Authority) error {
	if r.cfg.Configurations == ConfigurationsNone {
		r.ready.Store(true)
		<-ctx.Done()
		return nil
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil
	}
	if r.cfg.Configurations == ConfigurationsInjectCA {
		if err := r.watchMissing(ctx, mgr.GetCache()); err != nil {
			return err
		}
	}
	// The server's started check is a TLS handshake: it needs the certificate.
	if authority != nil && authority.Load(ctx) != nil {
		return nil
	}
	started := mgr.GetWebhookServer().StartedChecker()
	for started(nil) != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	if authority != nil {
		// The Authority publishes the bundle after every reload of the shared CAs (every
		// ResyncInterval), which also repairs the configurations; a repair here, with a
		// bundle it has not reloaded, could drop a CA another replica just added.
		return authority.Run(ctx)
	}
	if err := r.publishCAFile(ctx); err != nil {
		r.log.Error(err, "Registering the webhook configurations failed; retrying")
	}
	t := time.NewTicker(r.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := r.publishCAFile(ctx); err != nil {
			r.log.Error(err, "Repairing the webhook configurations failed")
		}
	}
}

// watchMissing writes the bundle at once into a configuration that shows up without one
// (Helm made it, or replaced it with --force-replace), rather than at the next repair: the
// API server cannot call the webhook until then. It only fills empty bundles, never
// replaces one: a replica that has not reloaded the shared CAs yet would otherwise undo,
// at every change, the bundle another replica just wrote.
func (r *registrar) watchMissing(ctx context.Context, c cache.Cache) error {
	kick := make(chan struct{}, 1)
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.kick(kick) },
		UpdateFunc: func(any, any) { r.kick(kick) },
	}
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watch the webhook configurations: %w", err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watch the webhook configurations: %w", err)
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			// A conflict means someone wrote the configuration since the cache saw it (this
			// replica's own repair, often): that write brings an event and another look.
			if err := r.fillMissing(ctx); err != nil && !apierrors.IsConflict(err) {
				r.log.Error(err, "Writing the CA bundle into a new webhook configuration failed; the next repair retries")
			}
		}
	}()
	return nil
}

func (r *registrar) kick(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

// fillMissing writes the current bundle into the configurations when one of their webhooks
// has none.
func (r *registrar) fillMissing(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bundle == nil {
		return nil
	}
	m, v := Configurations(*r.cfg, nil)
	var errs []error
	for _, want := range []client.Object{m, v} {
		cur := want.DeepCopyObject().(client.Object)
		if err := r.client.Get(ctx, client.ObjectKeyFromObject(want), cur); err != nil {
			errs = append(errs, client.IgnoreNotFound(err))
			continue
		}
		if slices.ContainsFunc(clientConfigs(cur), func(cc *admissionregistrationv1.WebhookClientConfig) bool { return len(cc.CABundle) == 0 }) {
			errs = append(errs, r.inject(ctx, want))
		}
	}
	return errors.Join(errs...)
}

func (r *registrar) publishCAFile(ctx context.Context) error {
	var bundle []byte
	if r.cfg.CAFile != "" {
		b, err := os.ReadFile(r.cfg.CAFile)
		if err != nil {
			return fmt.Errorf("read the CA file: %w", err)
		}
		bundle = b
	}
	return r.publish(ctx, bundle)
}

// ensureLocked creates or updates the configurations (ConfigurationsRegister), or writes
// the bundle into the two webhook configurations when they exist (ConfigurationsInjectCA:
// the chart made them). r.mu is held.
func (r *registrar) ensureLocked(ctx context.Context) error {
	m, v := Configurations(*r.cfg, r.bundle)
	var errs []error
	switch r.cfg.Configurations {
	case ConfigurationsRegister:
		policy, binding := KindPolicy(*r.cfg)
		for _, want := range []client.Object{m, v, policy, binding} {
			errs = append(errs, r.apply(ctx, want))
		}
	case ConfigurationsInjectCA:
		if r.bundle != nil {
			for _, want := range []client.Object{m, v} {
				errs = append(errs, r.inject(ctx, want))
			}
		}
	}
	return errors.Join(errs...)
}

// apply creates want, or updates the stored configuration to want's webhooks and labels.
func (r *registrar) apply(ctx context.Context, want client.Object) error {
	cur := want.DeepCopyObject().(client.Object)
	err := r.client.Get(ctx, client.ObjectKeyFromObject(want), cur)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.client.Create(ctx, want); err != nil {
			return fmt.Errorf("create %T %s: %w", want, want.GetName(), err)
		}
		r.log.Info("Created the webhook configuration", "kind", fmt.Sprintf("%T", want), "name", want.GetName())
		return nil
	case err != nil:
		return fmt.Errorf("get %T %s: %w", want, want.GetName(), err)
	}
	same := cur.GetLabels()[vk8sv1.LabelManagedBy] == vk8sv1.ManagedByVK8s
	cur.SetLabels(mergeLabels(cur.GetLabels(), want.GetLabels()))
	switch c := cur.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		w := want.(*admissionregistrationv1.MutatingWebhookConfiguration).Webhooks
		same = same && apiequality.Semantic.DeepEqual(c.Webhooks, w)
		c.Webhooks = w
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		w := want.(*admissionregistrationv1.ValidatingWebhookConfiguration).Webhooks
		same = same && apiequality.Semantic.DeepEqual(c.Webhooks, w)
		c.Webhooks = w
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		w := want.(*admissionregistrationv1.ValidatingAdmissionPolicy).Spec
		same = same && apiequality.Semantic.DeepDerivative(w, c.Spec)
		c.Spec = w
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		w := want.(*admissionregistrationv1.ValidatingAdmissionPolicyBinding).Spec
		same = same && apiequality.Semantic.DeepDerivative(w, c.Spec)
		c.Spec = w
	}
	if same {
		return nil
	}
	if err := r.client.Update(ctx, cur); err != nil {
		return fmt.Errorf("update %T %s: %w", cur, cur.GetName(), err)
	}
	r.log.Info("Updated the webhook configuration", "kind", fmt.Sprintf("%T", cur), "name", cur.GetName())
	return nil
}

// inject writes the bundle into every webhook of the stored configuration named like
// want, when it exists.
func (r *registrar) inject(ctx context.Context, want client.Object) error {
	cur := want.DeepCopyObject().(client.Object)
	if err := r.client.Get(ctx, client.ObjectKeyFromObject(want), cur); err != nil {
		return client.IgnoreNotFound(err)
	}
	configs := clientConfigs(cur)
	changed := false
	for _, cc := range configs {
		if !slices.Equal(cc.CABundle, r.bundle) {
			cc.CABundle, changed = r.bundle, true
		}
	}
	if !changed {
		return nil
	}
	if err := r.client.Update(ctx, cur); err != nil {
		return fmt.Errorf("write the CA bundle into %T %s: %w", cur, cur.GetName(), err)
	}
	return nil
}

// clientConfigs returns the client configurations of every webhook of a webhook
// configuration.
func clientConfigs(obj client.Object) []*admissionregistrationv1.WebhookClientConfig {
	var out []*admissionregistrationv1.WebhookClientConfig
	switch c := obj.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range c.Webhooks {
			out = append(out, &c.Webhooks[i].ClientConfig)
		}
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range c.Webhooks {
			out = append(out, &c.Webhooks[i].ClientConfig)
		}
	}
	return out
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
