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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/federation"
)

// The benchmarks call the handlers through controller-runtime's admission.Webhook, as
// the HTTPS server does (AdmissionReview decoding and encoding included, TLS not). The
// handlers read through memReader, which answers as the manager's informer cache does
// (objects in memory, copied on Get); the fake client, which serializes every object it
// returns, is several times slower than the real cache.

// memReader is a read-only client.Reader over objects held in memory.
type memReader struct {
	scheme *runtime.Scheme
	objs   map[schema.GroupVersionKind][]client.Object
}

func newMemReader(b *testing.B, e *env) *memReader {
	m := &memReader{scheme: e.scheme, objs: map[schema.GroupVersionKind][]client.Object{}}
	for _, list := range []client.ObjectList{&vk8sv1.SiteList{}, &vk8sv1.VirtualSiteList{}, &vk8sv1.VirtualKubernetesList{},
		&vk8sv1.OverrideList{}, &vk8sv1.WorkloadFlavorList{}, &corev1.NodeList{}, &corev1.PodList{}, &corev1.NamespaceList{},
		&appsv1.DeploymentList{}, &appsv1.ReplicaSetList{}} {
		if err := e.c.List(b.Context(), list); err != nil {
			b.Fatal(err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range items {
			obj := it.(client.Object)
			gvk, _ := apiutil.GVKForObject(obj, e.scheme)
			m.objs[gvk] = append(m.objs[gvk], obj)
		}
	}
	return m
}

func (m *memReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, m.scheme)
	if err != nil {
		return err
	}
	for _, o := range m.objs[gvk] {
		if o.GetNamespace() == key.Namespace && o.GetName() == key.Name {
			reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
			return nil
		}
	}
	return apierrors.NewNotFound(schema.GroupResource{Resource: gvk.Kind}, key.Name)
}

func (m *memReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	gvk, err := apiutil.GVKForObject(list, m.scheme)
	if err != nil {
		return err
	}
	gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
	o := (&client.ListOptions{}).ApplyOptions(opts)
	var out []runtime.Object
	for _, obj := range m.objs[gvk] {
		if o.Namespace != "" && obj.GetNamespace() != o.Namespace {
			continue
		}
		if o.FieldSelector != nil {
			if v, ok := o.FieldSelector.RequiresExactMatch(federation.IndexPodOwner); ok && !slices.Contains(federation.PodOwnerIndex(obj), v) {
				continue
			}
		}
		if o.UnsafeDisableDeepCopy != nil && *o.UnsafeDisableDeepCopy {
			out = append(out, obj)
		} else {
			out = append(out, obj.DeepCopyObject())
		}
	}
	return meta.SetList(list, out)
}

func reviewBody(b *testing.B, req admission.Request) []byte {
	b.Helper()
	raw, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func serve(b *testing.B, h http.Handler, body []byte) time.Duration {
	start := time.Now()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)).WithContext(b.Context())
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, r)
	d := time.Since(start)
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &review); err != nil || review.Response == nil || !review.Response.Allowed {
		// Errorf: serve runs in goroutines too.
		b.Errorf("admission failed: %v %s", err, w.Body.String())
	}
	return d
}

// benchmark runs one request per op (single), or 200 concurrent ones per op, and reports
// the latency percentiles of the requests.
func benchmark(b *testing.B, e *env, h http.Handler, bodies func(n int) [][]byte) {
	b.Run("single", func(b *testing.B) {
		body := bodies(1)[0]
		var lat []time.Duration
		for b.Loop() {
			// Reservations live 30 s; a second per request keeps about 30 of them, as a
			// steady stream of pods would.
			e.clock.add(time.Second)
			lat = append(lat, serve(b, h, body))
		}
		report(b, lat)
	})
	b.Run("concurrent-200", func(b *testing.B) {
		batch := bodies(200)
		var (
			mu  sync.Mutex
			lat []time.Duration
		)
		for b.Loop() {
			e.clock.add(time.Minute)
			var wg sync.WaitGroup
			for _, body := range batch {
				wg.Go(func() {
					d := serve(b, h, body)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		report(b, lat)
	})
}

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns/req")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns/req")
}

func BenchmarkPodAdmission(b *testing.B) {
	e := newEnv(b, canary([]string{"site2"}, nil, "nginx:2.0"))
	_, next := fleetWorkload(e, deployment("web", 100, map[string]string{"ves.io/overrides": "canary"}))
	e.a.cache = newMemReader(b, e)
	e.state.Resolver = federation.NewResolver(e.a.cache, e.state.SharedNamespace, e.state.DefaultWorkloadFlavor)
	h := &admission.Webhook{Handler: e.a.instrument(e.a.admitPod)}
	benchmark(b, e, h, func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = reviewBody(b, e.request(admissionv1.Create, next(), nil))
		}
		return out
	})
}

func BenchmarkWorkloadAdmission(b *testing.B) {
	e := newEnv(b, canary([]string{"site2"}, nil, "nginx:2.0"))
	e.a.cache = newMemReader(b, e)
	e.state.Resolver = federation.NewResolver(e.a.cache, e.state.SharedNamespace, e.state.DefaultWorkloadFlavor)
	h := &admission.Webhook{Handler: e.a.instrument(e.a.admitWorkload)}
	benchmark(b, e, h, func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			d := deployment(fmt.Sprintf("web-%d", i), 3, map[string]string{"ves.io/overrides": "canary", "ves.io/virtual-sites": "shared/all-sites"})
			d.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
			out[i] = reviewBody(b, e.request(admissionv1.Create, d, nil))
		}
		return out
	})
}
