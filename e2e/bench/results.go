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
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// results are a run's figures as the bench writes them (--results): one JSON file per
// run, named <date>-<commit>.json, which docs/performance.md lists. Durations are in
// seconds; a part that did not run is absent.
type results struct {
	// Date is when the run started (UTC); Commit the checkout's short commit, with
	// "-dirty" when it had uncommitted changes; Args the bench's flags.
	Date   time.Time `json:"date"`
	Commit string    `json:"commit"`
	Args   []string  `json:"args"`
	// CPUs is the machine's; LoadStart and LoadEnd its load averages (1, 5 and 15 minutes,
	// /proc/loadavg) when the run started and ended: the machine is shared.
	CPUs      int        `json:"cpus"`
	LoadStart [3]float64 `json:"loadStart"`
	LoadEnd   [3]float64 `json:"loadEnd"`

	PodStart *podStartResult `json:"podStart,omitempty"`
	// PodStartAtScale is the second pod start run (--scale-pods over --scale-pod-sites).
	PodStartAtScale *podStartResult   `json:"podStartAtScale,omitempty"`
	HangingSite     *hangingResult    `json:"hangingSite,omitempty"`
	Outage          *outageResult     `json:"outage,omitempty"`
	Admission       *admissionResult  `json:"admission,omitempty"`
	Footprint       []footprintResult `json:"footprint,omitempty"`
	Mirror          []mirrorResult    `json:"mirror,omitempty"`
	// ManyPods is the pods-at-scale run (--many-pods over --many-pod-sites).
	ManyPods *manyPodsResult `json:"manyPods,omitempty"`
}

// manyPodsResult is what the provider holds per pod, and its status lag while pods churn
// (manyPods). Memory in MiB, the per-pod figure in KiB.
type manyPodsResult struct {
	Pods              int     `json:"pods"`
	Sites             int     `json:"sites"`
	CreateSeconds     float64 `json:"createSeconds"`
	AllRunningSeconds float64 `json:"allRunningSeconds"`
	RSSBeforeMiB      float64 `json:"rssBeforeMiB"`
	RSSAfterMiB       float64 `json:"rssAfterMiB"`
	// HeapBeforeMiB and HeapAfterMiB are the provider's heap after its last collection
	// (go_memstats_next_gc_bytes / 2); CachesMiB the same pods in the same caches in the
	// bench's process; KiBPerPod what the provider holds beyond them, per pod.
	HeapBeforeMiB float64 `json:"heapBeforeMiB"`
	HeapAfterMiB  float64 `json:"heapAfterMiB"`
	CachesMiB     float64 `json:"cachesMiB"`
	KiBPerPod     float64 `json:"kibPerPod"`
	// The churn: pods replaced a second, for how long, their create -> Running seen, and
	// vk8s_provider_status_sync_lag_seconds over it.
	ChurnPerSecond int     `json:"churnPerSecond,omitempty"`
	ChurnSeconds   float64 `json:"churnSeconds,omitempty"`
	ChurnStarts    dist    `json:"churnStarts"`
	StatusLagP50   float64 `json:"statusLagP50Seconds,omitempty"`
	StatusLagP99   float64 `json:"statusLagP99Seconds,omitempty"`
	StatusWrites   int     `json:"statusWrites,omitempty"`
}

// dist is a latency distribution: the samples and their percentiles, in seconds.
type dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Seconds"`
	P99   float64 `json:"p99Seconds"`
}

func distOf(sorted []time.Duration) dist {
	return dist{Count: len(sorted), P50: pct(sorted, 50).Seconds(), P99: pct(sorted, 99).Seconds()}
}

// ratios are a pair of distributions' p50 and p99 ratios.
type ratios struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func ratiosOf(a, b []time.Duration) ratios {
	return ratios{P50: ratio(pct(a, 50), pct(b, 50)), P99: ratio(pct(a, 99), pct(b, 99))}
}

type podStartResult struct {
	Pods  int `json:"pods"`
	Sites int `json:"sites"`
	// HostScheduler: the pods through the host were bound by the host's scheduler (else
	// created with spec.nodeName).
	HostScheduler bool    `json:"hostScheduler"`
	Direct        dist    `json:"direct"`
	ViaHost       dist    `json:"viaHost"`
	Ratio         ratios  `json:"ratio"`
	Stages        []stage `json:"stages"`
	// StatusConflicts are the host status writes the provider's host refused as stale
	// during the run through the host (each written again at once).
	StatusConflicts int `json:"statusConflicts"`
	// StatusWrites are the host status writes virtual-kubelet asked the provider for
	// during the run through the host, by result (written, unchanged: not sent, failed).
	StatusWrites map[string]int `json:"statusWrites,omitempty"`
	// HostRequestsPerPod are the provider's requests to the host during the run through
	// the host, by method, divided by the pods.
	HostRequestsPerPod map[string]float64 `json:"hostRequestsPerPod,omitempty"`
}

type hangingResult struct {
	Pods    int    `json:"pods"`
	Stuck   int    `json:"stuck"`
	Rounds  int    `json:"rounds"`
	Healthy dist   `json:"healthy"`
	Hanging dist   `json:"hanging"`
	Ratio   ratios `json:"ratio"`
}

type outageResult struct {
	DownSeconds       float64 `json:"downSeconds"`
	Pods              int     `json:"pods"`
	NotReadyAtReturn  int     `json:"notReadyAtReturn"`
	HostPodsLost      int     `json:"hostPodsLost"`
	SitePodsLost      int     `json:"sitePodsLost"`
	SitePodsRestarted int     `json:"sitePodsRestarted"`
	ReadySeconds      float64 `json:"readyAfterProviderStartSeconds"`
}

type admissionResult struct {
	Creates int `json:"creates"`
	// Modes: one at a time, then Concurrent at once.
	Modes []admissionMode `json:"modes"`
	// SeedSeconds is the seed scenario, create call to 9/9 Running.
	SeedSeconds float64 `json:"seedSeconds"`
}

type admissionMode struct {
	At         int    `json:"at"`
	WebhookOff dist   `json:"webhookOff"`
	WebhookOn  dist   `json:"webhookOn"`
	Ratio      ratios `json:"ratio"`
	// Handler is the webhook's own time per pod admission (its
	// vk8s_webhook_admission_duration_seconds), APIServer the host API server's time
	// calling the webhook (apiserver_admission_webhook_admission_duration_seconds), and
	// APIReads the reads the webhook made of the API server meanwhile
	// (vk8s_webhook_api_reads_total): the difference is the transport's.
	Handler   *stage  `json:"handler,omitempty"`
	APIServer *stage  `json:"apiServer,omitempty"`
	APIReads  float64 `json:"apiReads"`
}

type footprintResult struct {
	Sites        string  `json:"sites"`
	VirtualNodes int     `json:"virtualNodes"`
	Ready        int     `json:"ready"`
	ToReady      float64 `json:"toReadySeconds"` // -1: not all Ready in time
	RSSMiB       float64 `json:"providerRSSMiB"`
	CPUPercent   float64 `json:"providerCPUPercent"`
	Goroutines   int     `json:"goroutines"`
	HostRequests float64 `json:"hostRequestsPerSecond"`
	OldestLease  float64 `json:"oldestLeaseSeconds"`
	OldestSite   float64 `json:"oldestSiteHeartbeatSeconds"`
}

type mirrorResult struct {
	Sites   int             `json:"sites"`
	Objects int             `json:"objects"`
	Direct  dist            `json:"direct"`
	Mirror  map[string]dist `json:"mirror"`
}

// newResults starts a run's results: date, commit, flags and the load now.
func newResults() *results {
	return &results{
		Date: time.Now().UTC().Truncate(time.Second), Commit: commit(), Args: withoutPaths(os.Args[1:]),
		CPUs: runtime.NumCPU(), LoadStart: loadAverage(),
	}
}

// write ends the results (the load now) and writes them to dir as <date>-<commit>.json.
func (r *results) write(dir string) (string, error) {
	r.LoadEnd = loadAverage()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the stages' "->"
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.Date.Format("2006-01-02T150405Z")+"-"+r.Commit+".json")
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

// withoutPaths is args with every absolute path cut to its last element: the results are
// committed, and say nothing of the machine's folders.
func withoutPaths(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if filepath.IsAbs(a) {
			a = filepath.Base(a)
		}
		out[i] = a
	}
	return out
}

// loadAverage reads /proc/loadavg; zeros where it cannot.
func loadAverage() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	for i, f := range strings.Fields(string(b)) {
		if i == len(out) {
			break
		}
		out[i], _ = strconv.ParseFloat(f, 64)
	}
	return out
}

// commit is the checkout's short commit, "-dirty" when it has uncommitted changes to
// tracked files, or "unknown" outside a git checkout.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if diff, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(diff)) > 0 {
		c += "-dirty"
	}
	return c
}

// printLoad prints the machine's load averages.
func printLoad(what string, l [3]float64) {
	fmt.Printf("machine load %s: %.2f %.2f %.2f (1, 5, 15 min; %d CPUs)\n", what, l[0], l[1], l[2], runtime.NumCPU())
}
