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

package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/lab"
)

// hangingSite prints the pod start latency of n pods on every site but the second, with
// every site healthy and with the second site's pod creates hanging (a site-side admission
// webhook that never answers, which holds each create for 30 s) while stuck pods of that
// site wait in the provider, and the ratio of the two: one site's hanging writes must not
// slow the others. The two alternate for rounds rounds, each run's pods deleted before the
// next, so that neither side runs on a fuller host or a warmer machine than the other; the
// percentiles are over every round's pods.
func hangingSite(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, n, stuck, rounds int, res *results) error {
	if len(names) < 2 {
		return nil
	}
	hung := names[1]
	var others []string
	for _, s := range names {
		if s != hung {
			others = append(others, s)
		}
	}
	node := func(i int) string {
		return others[i%len(others)] + "-" + lab.NodeName(i/len(others)%labNodes+1)
	}
	fmt.Printf("\npod start latency on the other sites while %s's writes hang, %d pods (%d stuck on %s), %d rounds of healthy then hanging\n",
		hung, n, stuck, hung, rounds)

	// The webhook that never answers, on the hung site, for the stuck pods' namespace only.
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.StartTLS()
	var once sync.Once
	stop := func() { once.Do(func() { close(release); srv.Close() }) }
	defer stop()
	site, err := clientset(l, hung)
	if err != nil {
		return err
	}
	const stuckNS = "bench-stuck"
	url := srv.URL + "/hang"
	hook := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "bench-hang"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "hang.bench.vk8s.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url,
				CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{vk8sv1.LabelHostNamespace: stuckNS}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](30),
		}}}
	hooks := site.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	defer func() { _ = hooks.Delete(context.Background(), hook.Name, metav1.DeleteOptions{}) }()

	var healthy, faulty []time.Duration
	for r := 1; r <= rounds; r++ {
		ns := fmt.Sprintf("bench-healthy-%d", r)
		d, err := latency(ctx, host, ns, n, false, node)
		if err != nil {
			return fmt.Errorf("healthy, round %d: %w", r, err)
		}
		healthy = append(healthy, d...)
		if err := dropNamespace(ctx, host, ns); err != nil {
			return err
		}

		if _, err := hooks.Create(ctx, hook, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: stuckNS}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		for i := range stuck {
			p := benchPod(fmt.Sprintf("stuck-%03d", i))
			p.Spec.NodeName = hung + "-" + lab.NodeName(i%labNodes+1)
			p.Spec.Tolerations = []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}}
			if _, err := host.CoreV1().Pods(stuckNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		ns = fmt.Sprintf("bench-faulty-%d", r)
		f, err := latency(ctx, host, ns, n, false, node)
		if err != nil {
			return fmt.Errorf("with %s hanging, round %d: %w", hung, r, err)
		}
		faulty = append(faulty, f...)
		slices.Sort(d)
		slices.Sort(f)
		fmt.Printf("  round %d: healthy p50 %s p99 %s, hanging p50 %s p99 %s\n", r,
			round(pct(d, 50)), round(pct(d, 99)), round(pct(f, 50)), round(pct(f, 99)))
		if err := hooks.Delete(ctx, hook.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		for _, ns := range []string{ns, stuckNS} {
			if err := dropNamespace(ctx, host, ns); err != nil {
				return err
			}
		}
	}
	slices.Sort(healthy)
	slices.Sort(faulty)
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", "all sites healthy", round(pct(healthy, 50)), round(pct(healthy, 99)))
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", hung+"'s writes hanging", round(pct(faulty, 50)), round(pct(faulty, 99)))
	fmt.Printf("  %-22s p50 %7.2fx  p99 %7.2fx\n", "ratio hanging/healthy",
		ratio(pct(faulty, 50), pct(healthy, 50)), ratio(pct(faulty, 99), pct(healthy, 99)))
	res.HangingSite = &hangingResult{Pods: n, Stuck: stuck, Rounds: rounds, Healthy: distOf(healthy), Hanging: distOf(faulty), Ratio: ratiosOf(faulty, healthy)}
	return nil
}

// dropNamespace deletes ns of the host and waits until it is gone, its pods with it (the
// provider deletes their site copies first).
func dropNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s not gone: %w", ns, err)
	}
	return nil
}
