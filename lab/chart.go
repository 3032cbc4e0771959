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
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vk8s-io/vk8s/charts"
)

const (
	// ChartRelease is the release of charts/vk8s in the lab's host, in SystemNamespace. Its
	// full name is "vk8s": ServiceAccounts vk8s-provider and vk8s-webhook, the webhook
	// configurations vk8s-webhook, the CA Secret vk8s-webhook-ca, the names the processes'
	// defaults and the chart's Roles agree on.
	ChartRelease = "vk8s"
	// WebhookConfigurationName names the chart's webhook configurations in the lab.
	WebhookConfigurationName = ChartRelease + "-webhook"
	// WebhookCASecret is the webhook's self-managed CA, in SystemNamespace.
	WebhookCASecret = ChartRelease + "-webhook-ca"

	// tokenLifetime is how long a component's token is valid; Up issues a new one (and
	// restarts the process) when less than tokenRenewBefore remains, so a lab lives on
	// across days as long as `up` runs once a week.
	tokenLifetime    = 7 * 24 * time.Hour
	tokenRenewBefore = 24 * time.Hour
)

// Components are the vk8s processes that run with a ServiceAccount of the chart.
var Components = []string{"provider", "webhook"}

// ServiceAccount is the chart's ServiceAccount of a component ("provider", "webhook").
func ServiceAccount(component string) string { return ChartRelease + "-" + component }

func (l *Lab) chartDir() string { return filepath.Join(l.cfg.Dir, "chart") }

// ComponentKubeconfig is the path of the kubeconfig a component runs with: the host, as
// the chart's ServiceAccount of the component, with a token Up requested.
func (l *Lab) ComponentKubeconfig(component string) string {
	return filepath.Join(l.cfg.Dir, "credentials", component+".kubeconfig")
}

// ComponentConfig returns a client configuration of the host as the chart's ServiceAccount
// of a component ("provider", "webhook"): what the lab's processes run with.
func (l *Lab) ComponentConfig(component string) (*rest.Config, error) {
	p := l.ComponentKubeconfig(component)
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("%w: no credentials of the %s in lab %s (run `vk8s lab up --name %s`)", ErrNotUp, component, l.cfg.Name, l.cfg.Name)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", p)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", p, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// installChart installs charts/vk8s (embedded in the binary) into the host, or upgrades
// it: CRDs, ServiceAccounts, RBAC, the webhook configurations calling webhookURL and the
// built-in WorkloadFlavors, without the Deployments (the host's nodes are kwok's and run
// no container). Objects the lab made before it installed the chart are taken over.
func (l *Lab) installChart(ctx context.Context, webhookURL string) error {
	dir := l.chartDir()
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.CopyFS(dir, charts.VK8s); err != nil {
		return fmt.Errorf("write the chart: %w", err)
	}
	// embed.FS has no modes: the copies are read-only, which is all helm needs, but
	// RemoveAll must be able to replace them next time.
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	}); err != nil {
		return err
	}
	helm, err := l.cfg.Tools.Path("helm")
	if err != nil {
		return err
	}
	kubeconfig, err := l.Kubeconfig("host")
	if err != nil {
		return err
	}
	args := []string{"upgrade", "--install", ChartRelease, filepath.Join(dir, "vk8s"),
		"--namespace", SystemNamespace, "--kubeconfig", kubeconfig,
		// The lab made the CRDs (and, before the chart, the flavors and configurations).
		"--take-ownership", "--server-side=true", "--force-conflicts",
		"--set", "deployments.enabled=false", "--set", "webhook.url=" + webhookURL,
		"--timeout", "2m"}
	home := filepath.Join(l.cfg.Dir, "helm")
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	l.logf("chart: helm %s", strings.Join(args[:3], " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if l.cfg.Vk8sBinary != "" {
		return nil
	}
	// A lab that runs no webhook (the e2e tests run theirs in the test process) would fail
	// closed on every VirtualKubernetes and Override: its configurations are made by
	// whoever runs a webhook, as the e2e tests do.
	c, err := l.Client("host")
	if err != nil {
		return err
	}
	for _, obj := range []client.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigurationName}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigurationName}},
	} {
		if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %T %s: %w", obj, WebhookConfigurationName, err)
		}
	}
	return nil
}

// ensureCredentials writes, for each component, a kubeconfig of the host with a token of
// its ServiceAccount, unless the one there still works and has a day left. It returns,
// per component, when its token expires: a process runs again when that changed.
func (l *Lab) ensureCredentials(ctx context.Context) (map[string]string, error) {
	admin, err := l.RESTConfig("host")
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, component := range Components {
		p := l.ComponentKubeconfig(component)
		if exp, ok := l.credentialsValid(ctx, component); ok {
			out[component] = exp
			continue
		}
		tr, err := cs.CoreV1().ServiceAccounts(SystemNamespace).CreateToken(ctx, ServiceAccount(component), &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(tokenLifetime / time.Second))},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("token of ServiceAccount %s/%s: %w", SystemNamespace, ServiceAccount(component), err)
		}
		raw, err := l.tokenKubeconfig(ServiceAccount(component), tr.Status.Token)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			return nil, err
		}
		l.logf("%s: token of ServiceAccount %s/%s until %s (%s)", component, SystemNamespace, ServiceAccount(component),
			tr.Status.ExpirationTimestamp.UTC().Format(time.RFC3339), p)
		out[component] = tr.Status.ExpirationTimestamp.UTC().Format(time.RFC3339)
	}
	return out, nil
}

// credentialsValid says whether a component's kubeconfig authenticates as its
// ServiceAccount (a token of a deleted ServiceAccount does not) with more than
// tokenRenewBefore left, and when its token expires.
func (l *Lab) credentialsValid(ctx context.Context, component string) (string, bool) {
	cfg, err := l.ComponentConfig(component)
	if err != nil {
		return "", false
	}
	exp, err := tokenExpiry(cfg.BearerToken)
	if err != nil || time.Until(exp) < tokenRenewBefore {
		return "", false
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", false
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != "system:serviceaccount:"+SystemNamespace+":"+ServiceAccount(component) {
		return "", false
	}
	return exp.UTC().Format(time.RFC3339), true
}

// tokenExpiry reads the exp claim of a JWT; the API server checks the signature.
func tokenExpiry(token string) (time.Time, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, fmt.Errorf("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, err
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, err
	}
	return time.Unix(claims.Exp, 0), nil
}

// tokenKubeconfig is the host's kubeconfig (its server and CA inlined) with user as the
// only user, authenticated by token.
func (l *Lab) tokenKubeconfig(user, token string) ([]byte, error) {
	raw, err := l.flatKubeconfig("host")
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return nil, err
	}
	cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{user: {Token: token}}
	for _, c := range cfg.Contexts {
		c.AuthInfo = user
	}
	return clientcmd.Write(*cfg)
}
