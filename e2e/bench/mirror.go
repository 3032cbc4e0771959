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
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/translate"
)

// mirrorLag prints how long a host object of a vK8s namespace takes to be on every site
// cluster the namespace runs on, equal to the host's (package mirror): n ConfigMaps
// created at once, then each changed, each measured from its create (update) call to the
// moment a watch on every site cluster has shown it with the new content. The baseline,
// in the same run, is the same n ConfigMaps created at once directly on one site cluster
// and seen by a watch there. sites is the number of Sites the namespace's VirtualSite
// selects; the Sites beyond the lab's own are node-selected slices of its 3 site
// clusters, so a copy is written once per cluster whatever the site count.
func mirrorLag(ctx context.Context, l *lab.Lab, host kubernetes.Interface, sites, n int, res *results) error {
	c, err := l.Client("host")
	if err != nil {
		return err
	}
	clusters, err := l.Sites()
	if err != nil {
		return err
	}
	ns := fmt.Sprintf("bench-mirror-%d", sites)
	siteNS := translate.SiteNamespace("vk8s", ns)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	defer func() { _ = c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) }()
	vk := &vk8sv1.VirtualKubernetes{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vk"},
		Spec: vk8sv1.VirtualKubernetesSpec{VirtualSite: lab.SharedNamespace + "/" + lab.AllSitesVirtualSite}}
	if err := c.Create(ctx, vk); err != nil {
		return err
	}
	sets := map[string]kubernetes.Interface{}
	for _, name := range clusters {
		if sets[name], err = clientset(l, name); err != nil {
			return err
		}
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(vk), vk); err != nil || len(vk.Status.Sites) != sites {
			return false, err
		}
		for _, cs := range sets {
			if _, err := cs.CoreV1().Namespaces().Get(ctx, siteNS, metav1.GetOptions{}); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("VirtualKubernetes %s/vk on %d sites (has %d): %w", ns, sites, len(vk.Status.Sites), err)
	}

	created, err := configMapLag(ctx, host, ns, sets, siteNS, n, "1")
	if err != nil {
		return fmt.Errorf("mirror, create: %w", err)
	}
	changed, err := configMapLag(ctx, host, ns, sets, siteNS, n, "2")
	if err != nil {
		return fmt.Errorf("mirror, change: %w", err)
	}
	direct := "bench-direct-" + strconv.Itoa(sites)
	site1 := sets[clusters[0]]
	if _, err := site1.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: direct}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer func() { _ = site1.CoreV1().Namespaces().Delete(context.Background(), direct, metav1.DeleteOptions{}) }()
	base, err := configMapLag(ctx, site1, direct, map[string]kubernetes.Interface{clusters[0]: site1}, direct, n, "1")
	if err != nil {
		return fmt.Errorf("directly on %s: %w", clusters[0], err)
	}
	fmt.Printf("\nmirror lag, %d sites (%d site clusters), %d ConfigMaps at once (call -> equal on every site cluster)\n", sites, len(sets), n)
	fmt.Printf("  %-28s p50 %8s  p99 %8s\n", "directly on one site", round(pct(base, 50)), round(pct(base, 99)))
	for _, r := range []struct {
		what string
		d    []time.Duration
	}{{"created on the host", created}, {"changed on the host", changed}} {
		fmt.Printf("  %-28s p50 %8s  p99 %8s  (x%.1f, x%.1f the direct)\n", r.what, round(pct(r.d, 50)), round(pct(r.d, 99)),
			ratio(pct(r.d, 50), pct(base, 50)), ratio(pct(r.d, 99), pct(base, 99)))
	}
	res.Mirror = append(res.Mirror, mirrorResult{Sites: sites, Objects: n, Direct: distOf(base),
		Mirror: map[string]dist{"created": distOf(created), "changed": distOf(changed)}})
	return nil
}

// configMapLag creates (value "1") or updates (any other value) n ConfigMaps cm000... in
// namespace ns through cs, all at once, and returns for each the time from its call to the
// moment every cluster of watched has shown it, in namespace watchNS, with that value.
func configMapLag(ctx context.Context, cs kubernetes.Interface, ns string, watched map[string]kubernetes.Interface, watchNS string,
	n int, value string) ([]time.Duration, error) {
	var mu sync.Mutex
	seen := map[string]map[string]time.Time{} // name -> cluster -> first seen with value
	done := make(chan struct{})
	remaining := n
	for cluster, wc := range watched {
		w, err := configMapWatch(ctx, wc, watchNS)
		if err != nil {
			return nil, err
		}
		defer w.Stop()
		go func() {
			for ev := range w.ResultChan() {
				cm, ok := ev.Object.(*corev1.ConfigMap)
				if !ok || ev.Type == watch.Deleted || cm.Data["v"] != value {
					continue
				}
				mu.Lock()
				if seen[cm.Name] == nil {
					seen[cm.Name] = map[string]time.Time{}
				}
				if _, dup := seen[cm.Name][cluster]; !dup {
					seen[cm.Name][cluster] = time.Now()
					if len(seen[cm.Name]) == len(watched) {
						if remaining--; remaining == 0 {
							close(done)
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	started := make([]time.Time, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("cm%03d", i)}, Data: map[string]string{"v": value}}
		wg.Go(func() {
			started[i] = time.Now()
			var err error
			if value == "1" {
				_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
			} else {
				_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		return nil, fmt.Errorf("%d of %d ConfigMaps on every cluster after 5m", n-remaining, n)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]time.Duration, 0, n)
	for i := range n {
		last := time.Time{}
		for _, t := range seen[fmt.Sprintf("cm%03d", i)] {
			if t.After(last) {
				last = t
			}
		}
		out = append(out, last.Sub(started[i]))
	}
	slices.Sort(out)
	return out, nil
}

// configMapWatch watches the ConfigMaps of ns from now on (client-go's RetryWatcher).
func configMapWatch(ctx context.Context, cs kubernetes.Interface, ns string) (watch.Interface, error) {
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, err
	}
	if list.ResourceVersion == "" {
		return nil, errors.New("list without a resourceVersion")
	}
	return watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cs.CoreV1().ConfigMaps(ns).Watch(ctx, o)
		},
	})
}
