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
	"fmt"
	"syscall"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/vk8s-io/vk8s/lab"
	"github.com/vk8s-io/vk8s/provider"
	"github.com/vk8s-io/vk8s/translate"
)

// outage kills the lab's provider (SIGKILL) with n pods running on the sites, keeps it down
// for downFor, starts it again, and prints what the outage cost: host pods evicted or
// deleted, site pods deleted or restarted (goal: none), and the seconds from the restart
// until every host pod is Ready again (the host's node lifecycle controller marks them not
// Ready once the virtual nodes' Leases expire; the provider's status puts them back).
func outage(ctx context.Context, l *lab.Lab, host kubernetes.Interface, names []string, n int, downFor time.Duration, res *results) error {
	const ns = "bench-outage"
	fmt.Printf("\nprovider outage of %s with %d pods over %d sites\n", downFor, n, len(names))
	if _, err := host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for i := range n {
		p := benchPod(fmt.Sprintf("o%03d", i))
		p.Spec.NodeName = names[i%len(names)] + "-" + lab.NodeName(i/len(names)%labNodes+1)
		// As admission makes the pods of vK8s namespaces do.
		p.Spec.Tolerations = []corev1.Toleration{{Key: vk8sv1.TaintKey, Operator: corev1.TolerationOpExists}}
		for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
		}
		if _, err := host.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	allReady := func(ctx context.Context) (bool, error) {
		list, err := host.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range list.Items {
			if podReady(&p) {
				ready++
			}
		}
		return ready == n, nil
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, allReady); err != nil {
		return fmt.Errorf("%d pods Ready before the outage: %w", n, err)
	}
	hostBefore, err := podUIDs(ctx, map[string]kubernetes.Interface{"host": host}, ns)
	if err != nil {
		return err
	}
	sites := map[string]kubernetes.Interface{}
	for _, s := range names {
		if sites[s], err = clientset(l, s); err != nil {
			return err
		}
	}
	siteNS := translate.SiteNamespace(provider.DefaultTenant, ns)
	siteBefore, err := podUIDs(ctx, sites, siteNS)
	if err != nil {
		return err
	}

	st, err := l.Status(ctx)
	if err != nil {
		return err
	}
	pid := 0
	for _, c := range st {
		for _, comp := range c.Components {
			if c.Name == "host" && comp.Name == "vk8s-provider" && comp.Running {
				pid = comp.PID
			}
		}
	}
	if pid == 0 {
		return fmt.Errorf("the lab's provider is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	time.Sleep(downFor)
	notReady := 0
	if list, err := host.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range list.Items {
			if !podReady(&p) {
				notReady++
			}
		}
	}
	restarted := time.Now()
	if err := l.Up(ctx); err != nil {
		return fmt.Errorf("restart the provider: %w", err)
	}
	up := time.Since(restarted)
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 10*time.Minute, true, allReady); err != nil {
		return fmt.Errorf("%d pods Ready after the outage: %w", n, err)
	}
	readyAt := time.Now()
	fresh := readyAt.Sub(restarted)
	// From the new provider process's start, which lab up reaches after checking every
	// cluster.
	sinceStart, readySeconds := "unknown", -1.0
	if pids, err := labPIDs(ctx, l); err == nil {
		if started, err := processStart(pids["vk8s-provider"]); err == nil {
			sinceStart, readySeconds = round(readyAt.Sub(started)).String(), readyAt.Sub(started).Seconds()
		}
	}

	hostAfter, err := podUIDs(ctx, map[string]kubernetes.Interface{"host": host}, ns)
	if err != nil {
		return err
	}
	siteAfter, err := podUIDs(ctx, sites, siteNS)
	if err != nil {
		return err
	}
	gone := func(before, after map[string]podID) (lost, restartedPods int) {
		for name, b := range before {
			a, ok := after[name]
			switch {
			case !ok || a.uid != b.uid:
				lost++
			case a.restarts > b.restarts:
				restartedPods++
			}
		}
		return lost, restartedPods
	}
	hostLost, _ := gone(hostBefore, hostAfter)
	siteLost, siteRestarted := gone(siteBefore, siteAfter)
	fmt.Printf("  host pods not Ready when the provider came back: %d of %d (the host's node lifecycle controller)\n", notReady, n)
	fmt.Printf("  host pods evicted or deleted: %d; site pods deleted or replaced: %d, restarted: %d\n", hostLost, siteLost, siteRestarted)
	fmt.Printf("  every host pod Ready again %s after the new provider process started, %s after the restart began (lab up, which checks every cluster and starts the provider, took %s)\n",
		sinceStart, round(fresh), round(up))
	res.Outage = &outageResult{DownSeconds: downFor.Seconds(), Pods: n, NotReadyAtReturn: notReady, HostPodsLost: hostLost,
		SitePodsLost: siteLost, SitePodsRestarted: siteRestarted, ReadySeconds: readySeconds}
	return nil
}

type podID struct {
	uid      types.UID
	restarts int32
}

// podUIDs lists the pods of namespace ns in each cluster by name.
func podUIDs(ctx context.Context, clusters map[string]kubernetes.Interface, ns string) (map[string]podID, error) {
	out := map[string]podID{}
	for name, cs := range clusters {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("pods of %s in %s: %w", name, ns, err)
		}
		for _, p := range list.Items {
			var restarts int32
			for _, c := range p.Status.ContainerStatuses {
				restarts += c.RestartCount
			}
			out[p.Name] = podID{uid: p.UID, restarts: restarts}
		}
	}
	return out, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
