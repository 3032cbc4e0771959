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
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// SecretKey is the key of the kubeconfig in a Site's Secret.
const SecretKey = "kubeconfig"

// SecretName is the name of the host Secret that holds Site site's kubeconfig.
func SecretName(site string) string { return site + "-kubeconfig" }

// Token is a bound ServiceAccount token of the site and its lifetime.
type Token struct {
	Value   string
	Issued  time.Time
	Expires time.Time
}

// Kubeconfig returns a self-contained kubeconfig (as a Site's Secret must hold it) for
// the API server that admin reaches (its address, CA and TLS server name; admin's files
// already read into data, rest.LoadTLSFiles), authenticated by token as account.
func Kubeconfig(site, account string, admin *rest.Config, token string) ([]byte, error) {
	if admin.Host == "" {
		return nil, errors.New("the site's kubeconfig has no server")
	}
	if admin.CAFile != "" && len(admin.CAData) == 0 {
		return nil, fmt.Errorf("the CA of %s is in a file (%s) not yet read", admin.Host, admin.CAFile)
	}
	user := account + "@" + site
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{site: {
			Server:                   admin.Host,
			CertificateAuthorityData: admin.CAData,
			TLSServerName:            admin.ServerName,
			InsecureSkipTLSVerify:    admin.Insecure,
		}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{site: {Cluster: site, AuthInfo: user}},
		CurrentContext: site,
	}
	return clientcmd.Write(cfg)
}

// HostSecret is the Secret in the host (namespace) that holds Site site's kubeconfig, with
// the annotations the provider renews its token by.
func HostSecret(namespace, tenant, site string, kubeconfig []byte, tok Token) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: SecretName(site), Namespace: namespace, Labels: objectLabels(tenant, site),
			Annotations: TokenAnnotations(AccountName(tenant, site), tok),
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{SecretKey: kubeconfig},
	}
}

// TokenAnnotations are the annotations of a Site Secret whose kubeconfig holds tok, a
// token of ServiceAccount account in Namespace on the site.
func TokenAnnotations(account string, tok Token) map[string]string {
	return map[string]string{
		vk8sv1.AnnotationSiteServiceAccount: Namespace + "/" + account,
		vk8sv1.AnnotationTokenIssued:        tok.Issued.UTC().Format(time.RFC3339),
		vk8sv1.AnnotationTokenExpiration:    tok.Expires.UTC().Format(time.RFC3339),
	}
}

// RenewDue says whether the token of a Site Secret with annotations ann is due for renewal
// at now: once half of its lifetime has passed, so that a provider down for less than
// half of it finds it still valid. ok is false when ann holds no token of join's.
func RenewDue(ann map[string]string, now time.Time) (due, ok bool, err error) {
	if ann[vk8sv1.AnnotationSiteServiceAccount] == "" || ann[vk8sv1.AnnotationTokenExpiration] == "" {
		return false, false, nil
	}
	expires, err := time.Parse(time.RFC3339, ann[vk8sv1.AnnotationTokenExpiration])
	if err != nil {
		return false, true, fmt.Errorf("annotation %s: %w", vk8sv1.AnnotationTokenExpiration, err)
	}
	issued, err := time.Parse(time.RFC3339, ann[vk8sv1.AnnotationTokenIssued])
	if err != nil {
		return false, true, fmt.Errorf("annotation %s: %w", vk8sv1.AnnotationTokenIssued, err)
	}
	half := issued.Add(expires.Sub(issued) / 2)
	return !now.Before(half), true, nil
}

// NewSite returns the Site that join creates.
func NewSite(cfg JoinConfig) *vk8sv1.Site {
	return &vk8sv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Labels: cfg.Labels},
		Spec: vk8sv1.SiteSpec{
			KubeconfigSecretRef: vk8sv1.SecretKeyReference{Namespace: cfg.SecretNamespace, Name: SecretName(cfg.Name), Key: SecretKey},
			Type:                cfg.Type,
			NodeMode:            cfg.NodeMode,
			NodeSelector:        cfg.NodeSelector,
		},
	}
}
