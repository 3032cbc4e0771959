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
	"sync"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/lab"
)

// hangingSite prints the pod start latency of n pods on every site but the second, first
// with every site healthy, then with the second site's pod creates hanging (a site-side
// admission webhook that never answers, which holds each create for 30 s) while stuck pods
// of that site wait in the provider, and the ratio of the two: one site's hanging writes
// must not slow the others.
func hangingSite(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, n, stuck int) error {
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
	fmt.Printf("\npod start latency on the other sites while %s's writes hang, %d pods (%d stuck on %s)\n", hung, n, stuck, hung)
	healthy, err := latency(ctx, host, "bench-healthy", n, false, node)
	if err != nil {
		return fmt.Errorf("healthy: %w", err)
	}

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
	if _, err := hooks.Create(ctx, hook, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer func() { _ = hooks.Delete(context.Background(), hook.Name, metav1.DeleteOptions{}) }()
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
	faulty, err := latency(ctx, host, "bench-faulty", n, false, node)
	if err != nil {
		return fmt.Errorf("with %s hanging: %w", hung, err)
	}
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", "all sites healthy", round(pct(healthy, 50)), round(pct(healthy, 99)))
	fmt.Printf("  %-22s p50 %8s  p99 %8s\n", hung+"'s writes hanging", round(pct(faulty, 50)), round(pct(faulty, 99)))
	fmt.Printf("  %-22s p50 %7.2fx  p99 %7.2fx\n", "ratio hanging/healthy",
		ratio(pct(faulty, 50), pct(healthy, 50)), ratio(pct(faulty, 99), pct(healthy, 99)))
	return nil
}
