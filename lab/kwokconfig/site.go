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

package kwokconfig

import (
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// TarShim is the tar that kwok's exec runs on the sites (kubectl cp runs tar through exec):
// the system's tar with a blocking factor of 1. kwok v0.8.0 copies an exec's stdin into
// the command's pipe and never closes the pipe (pkg/utils/exec/exec.go, Command, the
// PipeStdin branch, about line 220), so the command never sees the end of its stdin. GNU
// tar reads whole records of 20 blocks (10240 bytes) and so waits forever for the rest of
// the record after the end-of-archive blocks kubectl cp's Go tar writer sends; with one
// block per record, tar -x stops at the end-of-archive marker. The option goes through
// TAR_OPTIONS because an argument before kubectl's old-style "tar cf -" would make tar
// read "cf" as a file name. On a real kubelet the end of stdin arrives and no shim is
// needed.
func TarShim(systemTar string) []byte {
	return []byte(`#!/bin/sh
# vk8s lab: see TarShim in lab/kwokconfig. kwok v0.8.0's exec never closes a
# command's stdin (pkg/utils/exec/exec.go, PipeStdin), so tar -x must stop at the
# end-of-archive marker (one 512-byte block per record) instead of waiting for the rest
# of a 10240-byte record that never comes.
TAR_OPTIONS="--blocking-factor=1${TAR_OPTIONS:+ $TAR_OPTIONS}"
export TAR_OPTIONS
exec ` + systemTar + ` "$@"
`)
}

// endedStatus is the status template of a kwok Stage that ends every container of a pod
// with exitCode (a template expression of a string: "0", "1", ...): with "0", reason
// Completed and the pod Succeeded, else reason Error and the pod Failed.
func endedStatus(exitCode string) string {
	return `{{ $now := Now }}{{ $code := ` + exitCode + ` }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ $code }}
      finishedAt: {{ $now | Quote }}
      reason: {{ if eq $code "0" }}Completed{{ else }}Error{{ end }}
      startedAt: {{ $now | Quote }}
{{ end }}
phase: {{ if eq $code "0" }}Succeeded{{ else }}Failed{{ end }}
`
}

// JobPodRunTime is how long a site pod of a Job runs in the lab before it completes.
const JobPodRunTime = 2000 // milliseconds

// Stages renders the lab's kwok Stages. kwok never ends a container by itself, and a
// real site's containers do end, so:
//
//   - vk8s-lab-exit-after: a running pod annotated vk8sv1.AnnotationLabExitAfter completes
//     after the annotation's duration (as kwok's general pod-complete stage,
//     kustomize/stage/pod/general/pod-complete.yaml, reads its delay from an annotation);
//   - vk8s-lab-job-complete: a running pod of a Job completes after JobPodRunTime. A site
//     pod has no Job owner on its site (its Job is the host's), so kwokctl's own
//     pod-complete stage, which selects on the owner, never ends it; the stage selects on
//     the label batch.kubernetes.io/job-name that the site pod carries from its host pod;
//   - vk8s-lab-job-exit-code: a running pod of a Job annotated vk8sv1.AnnotationLabExitCode
//     ends after JobPodRunTime with that exit code: other than "0", phase Failed and
//     reason Error, as a container that exits with it does.
//
// kwokctl's default stages still apply: they come from kwokctl's configuration file, these
// from kwok's second.
func Stages() ([]byte, error) {
	exitAfter := fmt.Sprintf(".metadata.annotations[%q]", vk8sv1.AnnotationLabExitAfter)
	exitCode := fmt.Sprintf(".metadata.annotations[%q]", vk8sv1.AnnotationLabExitCode)
	jobName := fmt.Sprintf(".metadata.labels[%q]", batchv1.JobNameLabel)
	running := []any{
		map[string]any{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
		map[string]any{"key": ".status.phase", "operator": "In", "values": []any{"Running"}},
	}
	stage := func(name string, selector []any, delay map[string]any, status string) map[string]any {
		return map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{
				"resourceRef": map[string]any{"apiGroup": "v1", "kind": "Pod"},
				"selector":    map[string]any{"matchExpressions": append(append([]any{}, running...), selector...)},
				"delay":       delay,
				"next":        map[string]any{"statusTemplate": status},
			},
		}
	}
	completed := endedStatus(`"0"`)
	jobPod := []any{map[string]any{"key": jobName, "operator": "Exists"}, map[string]any{"key": exitAfter, "operator": "DoesNotExist"}}
	runTime := map[string]any{"durationMilliseconds": JobPodRunTime}
	return yamlDocuments([]any{
		stage("vk8s-lab-exit-after",
			[]any{map[string]any{"key": exitAfter, "operator": "Exists"}},
			map[string]any{"durationFrom": map[string]any{"expressionFrom": exitAfter}}, completed),
		stage("vk8s-lab-job-complete",
			append(slices.Clone(jobPod), map[string]any{"key": exitCode, "operator": "DoesNotExist"}), runTime, completed),
		stage("vk8s-lab-job-exit-code",
			append(slices.Clone(jobPod), map[string]any{"key": exitCode, "operator": "Exists"}), runTime,
			endedStatus(fmt.Sprintf(`index .metadata.annotations %q`, vk8sv1.AnnotationLabExitCode))),
	})
}

// Metrics renders the kwok configuration that simulates the resource metrics of
// the sites' nodes, as kwokctl's metrics-server option would (kwok's kustomize/metrics):
// a Metric serving the kubelet's /metrics/resource series at
// /metrics/nodes/{nodeName}/metrics/resource, the path kwok's nodes name in their
// metrics.k8s.io/resource-metrics-path annotation, and a ClusterResourceUsage giving every
// container the CPU and memory its pod's kwok.x-k8s.io/usage-cpu and
// kwok.x-k8s.io/usage-memory annotations say (1m and 1Mi without them).
func Metrics() ([]byte, error) {
	type series struct {
		name, dimension, kind, help, value string
	}
	labels := map[string][]any{
		"node": nil,
		"pod":  {label("namespace", "pod.metadata.namespace"), label("pod", "pod.metadata.name")},
		"container": {label("container", "container.name"), label("namespace", "pod.metadata.namespace"),
			label("pod", "pod.metadata.name")},
	}
	// A node uses some CPU and memory of its own (the system and the kubelet), as a real
	// node does; metrics-server drops a node whose CPU or memory reads 0, so an idle kwok
	// node would show <unknown> in kubectl top.
	const (
		nodeCPU    = `node.CumulativeUsage("cpu") + node.SinceSecond() * 0.05` // 50m
		nodeMemory = `node.Usage("memory") + 268435456.0`                      // 256Mi
	)
	var metrics []any
	for _, m := range []series{
		{"scrape_error", "node", "gauge", "1 if there was an error while getting container metrics, 0 otherwise", "0"},
		{"node_cpu_usage_seconds_total", "node", "counter", "Cumulative cpu time consumed by the node in core-seconds", nodeCPU},
		{"node_memory_working_set_bytes", "node", "gauge", "Current working set of the node in bytes", nodeMemory},
		{"pod_cpu_usage_seconds_total", "pod", "counter", "Cumulative cpu time consumed by the pod in core-seconds", `pod.CumulativeUsage("cpu")`},
		{"pod_memory_working_set_bytes", "pod", "gauge", "Current working set of the pod in bytes", `pod.Usage("memory")`},
		{"container_start_time_seconds", "container", "gauge", "Start time of the container since unix epoch in seconds", "pod.SinceSecond()"},
		{"container_cpu_usage_seconds_total", "container", "counter", "Cumulative cpu time consumed by the container in core-seconds",
			`pod.CumulativeUsage("cpu", container.name)`},
		{"container_memory_working_set_bytes", "container", "gauge", "Current working set of the container in bytes",
			`pod.Usage("memory", container.name)`},
	} {
		metric := map[string]any{"name": m.name, "dimension": m.dimension, "kind": m.kind, "help": m.help, "value": m.value}
		if l := labels[m.dimension]; l != nil {
			metric["labels"] = l
		}
		metrics = append(metrics, metric)
	}
	usage := func(resource, fallback string) map[string]any {
		annotation := "kwok.x-k8s.io/usage-" + resource
		return map[string]any{"expression": fmt.Sprintf("%q in pod.metadata.annotations ? Quantity(pod.metadata.annotations[%q]) : Quantity(%q)",
			annotation, annotation, fallback)}
	}
	return yamlDocuments([]any{
		map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Metric",
			"metadata": map[string]any{"name": "vk8s-lab-metrics-resource"},
			"spec":     map[string]any{"path": "/metrics/nodes/{nodeName}/metrics/resource", "metrics": metrics},
		},
		map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterResourceUsage",
			"metadata": map[string]any{"name": "vk8s-lab-usage"},
			"spec": map[string]any{"usages": []any{map[string]any{
				"usage": map[string]any{"cpu": usage("cpu", "1m"), "memory": usage("memory", "1Mi")},
			}}},
		},
	})
}

func label(name, value string) map[string]any { return map[string]any{"name": name, "value": value} }
