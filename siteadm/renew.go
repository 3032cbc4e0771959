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

package siteadm

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// DefaultRenewInterval is how often the Renewer looks at the tokens.
const DefaultRenewInterval = time.Minute

// Renewer renews the site tokens of the kubeconfig Secrets that join made in one host
// namespace (those with the annotations of TokenAnnotations): once half of a token's
// lifetime has passed, it asks the site for a new token of the same lifetime with the
// token itself (the site's ClusterRole lets the ServiceAccount create tokens for itself
// only) and writes the new kubeconfig into the Secret, which the site registry then
// picks up as a kubeconfig rotation. The provider runs it while it leads.
type Renewer struct {
	// Host updates the Secrets.
	Host client.Client
	// Reader lists them: the manager's API reader, not its cache, which would watch
	// every Secret of the cluster. Nil: Host.
	Reader client.Reader
	// Namespace holds the Secrets (the provider's release namespace).
	Namespace string
	// Interval between two looks. Zero: DefaultRenewInterval.
	Interval time.Duration
	// Log receives one line per renewal or failure.
	Log logr.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// +kubebuilder:rbac:groups="",resources=secrets,verbs=update,namespace=vk8s-system

// Start runs the Renewer until ctx ends.
func (r *Renewer) Start(ctx context.Context) error {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	t := time.NewTicker(cmp.Or(r.Interval, DefaultRenewInterval))
	defer t.Stop()
	for {
		r.RenewDue(ctx, now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RenewDue renews every token due at now.
func (r *Renewer) RenewDue(ctx context.Context, now time.Time) {
	var list corev1.SecretList
	reader := r.Reader
	if reader == nil {
		reader = r.Host
	}
	if err := reader.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingLabels{vk8sv1.LabelManagedBy: vk8sv1.ManagedByVK8s}); err != nil {
		r.Log.Error(err, "Cannot list the site kubeconfig Secrets", "namespace", r.Namespace)
		return
	}
	for i := range list.Items {
		s := &list.Items[i]
		due, ok, err := RenewDue(s.Annotations, now)
		if !ok || (!due && err == nil) {
			continue
		}
		if err == nil {
			err = r.renew(ctx, s, now)
		}
		if err != nil {
			r.Log.Error(err, "Cannot renew the site token", "secret", s.Namespace+"/"+s.Name)
			continue
		}
		r.Log.Info("Renewed the site token", "secret", s.Namespace+"/"+s.Name, "expires", s.Annotations[vk8sv1.AnnotationTokenExpiration])
	}
}

func (r *Renewer) renew(ctx context.Context, s *corev1.Secret, now time.Time) error {
	ns, account, ok := strings.Cut(s.Annotations[vk8sv1.AnnotationSiteServiceAccount], "/")
	if !ok || ns != Namespace {
		return fmt.Errorf("annotation %s=%q: want %s/<name>", vk8sv1.AnnotationSiteServiceAccount, s.Annotations[vk8sv1.AnnotationSiteServiceAccount], Namespace)
	}
	raw, err := clientcmd.Load(s.Data[SecretKey])
	if err != nil {
		return fmt.Errorf("parse the kubeconfig: %w", err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("parse the kubeconfig: %w", err)
	}
	cfg.Timeout = DefaultSiteTimeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	issued, _ := time.Parse(time.RFC3339, s.Annotations[vk8sv1.AnnotationTokenIssued])
	expires, _ := time.Parse(time.RFC3339, s.Annotations[vk8sv1.AnnotationTokenExpiration])
	ttl := max(expires.Sub(issued), minTokenTTL)
	tr, err := c.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, account, tokenRequest(ttl), metav1.CreateOptions{})
	if err != nil {
		return siteFailure(cfg.Host, "renewing the token of ServiceAccount "+Namespace+"/"+account, err)
	}
	user := raw.Contexts[raw.CurrentContext].AuthInfo
	raw.AuthInfos[user].Token = tr.Status.Token
	kc, err := clientcmd.Write(*raw)
	if err != nil {
		return err
	}
	s.Data[SecretKey] = kc
	for k, v := range TokenAnnotations(account, Token{Issued: now, Expires: tr.Status.ExpirationTimestamp.Time}) {
		s.Annotations[k] = v
	}
	if err := r.Host.Update(ctx, s); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("the Secret changed meanwhile; the next look renews it: %w", err)
		}
		return fmt.Errorf("update the Secret: %w", err)
	}
	return nil
}
