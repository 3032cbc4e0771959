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

package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// Objects returns the ServiceAccount, the Role (Rules) and the RoleBinding that give req's
// user the kinds of its namespace, labelled as vk8s' and with the user's name.
func Objects(req Request) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: req.Namespace, Name: name, Labels: map[string]string{
			vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s, vk8sv1.LabelKubeconfigUser: req.User}}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: meta(req.User)}
	role := &rbacv1.Role{ObjectMeta: meta(RoleName(req.User)), Rules: Rules()}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: meta(RoleName(req.User)),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: req.Namespace, Name: sa.Name}},
	}
	return sa, role, binding
}

// Granted is what Grant did and minted.
type Granted struct {
	// Kubeconfig is the user's kubeconfig.
	Kubeconfig []byte
	// Expires is when its token expires, as the API server issued it.
	Expires time.Time
	// Changes says what Grant wrote, one line per object ("created ServiceAccount
	// demo/vk8s-user"); an object already as it should be is not named.
	Changes []string
}

// Grant makes, or brings up to date, the objects of req (Objects) in its namespace with
// the admin's client c, then mints a token of the ServiceAccount through the TokenRequest
// API and returns a kubeconfig of cluster with it. It refuses, before writing anything, a
// namespace that is not a vK8s namespace and objects of those names that `vk8s
// kubeconfig` did not make for this user; when a write fails, it deletes what it created.
// Running it again updates the Role (the kinds of this version of vk8s) and mints another
// token; the earlier tokens stay valid until they expire or the ServiceAccount is deleted.
func Grant(ctx context.Context, c client.Client, cluster Cluster, req Request) (_ *Granted, err error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if err := checkNamespace(ctx, c, req.Namespace); err != nil {
		return nil, err
	}
	sa, role, binding := Objects(req)
	current := map[client.Object]client.Object{sa: &corev1.ServiceAccount{}, role: &rbacv1.Role{}, binding: &rbacv1.RoleBinding{}}
	var found []client.Object
	var conflicts []error
	for _, want := range []client.Object{sa, role, binding} {
		have := current[want]
		switch err := c.Get(ctx, client.ObjectKeyFromObject(want), have); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", describe(want), err)
		case have.GetLabels()[vk8sv1.LabelKubeconfigUser] != req.User:
			conflicts = append(conflicts, fmt.Errorf("%s exists and was not made by vk8s kubeconfig for user %s (label %s=%s is missing): "+
				"vk8s does not take over an object it did not make; choose another --user, or delete it if it is a leftover",
				describe(want), req.User, vk8sv1.LabelKubeconfigUser, req.User))
		default:
			found = append(found, want)
		}
	}
	if len(conflicts) > 0 {
		return nil, errors.Join(conflicts...)
	}

	out := &Granted{}
	var created []client.Object
	defer func() {
		if err != nil {
			err = errors.Join(err, undo(ctx, c, created))
		}
	}()
	for _, want := range []client.Object{sa, role, binding} {
		if !slices.Contains(found, want) {
			if err := c.Create(ctx, want); err != nil {
				return nil, fmt.Errorf("create %s: %w", describe(want), err)
			}
			created = append(created, want)
			out.Changes = append(out.Changes, "created "+describe(want))
			continue
		}
		changed, err := update(ctx, c, current[want], want)
		if err != nil {
			return nil, fmt.Errorf("update %s: %w", describe(want), err)
		}
		if changed {
			out.Changes = append(out.Changes, "updated "+describe(want))
		}
	}

	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(req.TTL / time.Second))}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return nil, fmt.Errorf("request a token of %s: %w", describe(sa), err)
	}
	out.Expires = tr.Status.ExpirationTimestamp.Time
	out.Kubeconfig, err = clientcmd.Write(*Kubeconfig(cluster, req.Namespace, req.User, tr.Status.Token))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkNamespace refuses a namespace that is not a vK8s namespace, or not yet or no
// longer one: its pods would run on the host.
func checkNamespace(ctx context.Context, c client.Client, name string) error {
	ns := &corev1.Namespace{}
	switch err := c.Get(ctx, client.ObjectKey{Name: name}, ns); {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("namespace %s not found: create it and a VirtualKubernetes in it (docs/tenancy.md), or name a vK8s namespace (kubectl get virtualkubernetes -A lists them)", name)
	case err != nil:
		return fmt.Errorf("read namespace %s: %w", name, err)
	case ns.DeletionTimestamp != nil:
		return fmt.Errorf("namespace %s is being deleted", name)
	}
	var vks vk8sv1.VirtualKubernetesList
	if err := c.List(ctx, &vks, client.InNamespace(name)); err != nil {
		return fmt.Errorf("list the VirtualKubernetes of namespace %s: %w", name, err)
	}
	switch {
	case len(vks.Items) == 0:
		return fmt.Errorf("namespace %s is not a vK8s namespace (it has no VirtualKubernetes), so its pods would run on the host: "+
			"create a VirtualKubernetes in it first (docs/tenancy.md), or name a vK8s namespace (kubectl get virtualkubernetes -A lists them)", name)
	case vks.Items[0].DeletionTimestamp != nil:
		return fmt.Errorf("namespace %s's VirtualKubernetes %s is being deleted: the namespace is leaving vK8s", name, vks.Items[0].Name)
	case ns.Labels[vk8sv1.LabelVirtualKubernetes] == "":
		return fmt.Errorf("namespace %s has VirtualKubernetes %s but not yet the label %s that the vk8s webhook sets, "+
			"so its pods would not yet go to the sites: check that the webhook runs (kubectl -n vk8s-system get pods) and try again",
			name, vks.Items[0].Name, vk8sv1.LabelVirtualKubernetes)
	}
	return nil
}

// update writes want's labels (and a Role's rules, a RoleBinding's subjects) over have,
// when they differ, and says whether it did.
func update(ctx context.Context, c client.Client, have, want client.Object) (bool, error) {
	before := have.DeepCopyObject()
	labels := have.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range want.GetLabels() {
		labels[k] = v
	}
	have.SetLabels(labels)
	switch h := have.(type) {
	case *rbacv1.Role:
		h.Rules = want.(*rbacv1.Role).Rules
	case *rbacv1.RoleBinding:
		w := want.(*rbacv1.RoleBinding)
		if h.RoleRef != w.RoleRef {
			return false, fmt.Errorf("it binds %s %s, not Role %s: delete it and run vk8s kubeconfig again", h.RoleRef.Kind, h.RoleRef.Name, w.RoleRef.Name)
		}
		h.Subjects = w.Subjects
	}
	if equality.Semantic.DeepEqual(before, have) {
		return false, nil
	}
	return true, c.Update(ctx, have)
}

// undo deletes what Grant created before it failed, even when ctx was cancelled, and
// names what it could not.
func undo(ctx context.Context, c client.Client, created []client.Object) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	for _, obj := range slices.Backward(created) {
		if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s was created and is left: delete it (%w)", describe(obj), err))
		}
	}
	return errors.Join(errs...)
}

// describe names obj as "Kind namespace/name".
func describe(obj client.Object) string {
	kind := "ServiceAccount"
	switch obj.(type) {
	case *rbacv1.Role:
		kind = "Role"
	case *rbacv1.RoleBinding:
		kind = "RoleBinding"
	}
	return kind + " " + obj.GetNamespace() + "/" + obj.GetName()
}
