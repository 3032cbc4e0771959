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
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestRender(t *testing.T) {
	tools := map[string]string{}
	for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "etcdctl", "etcdutl", "kwok"} {
		tools[n] = "/t/" + n
	}
	for _, tc := range []struct {
		role Role
	}{{Host}, {Site}} {
		raw, err := Render(Cluster{Role: tc.role, Tools: tools, Advertise: "192.0.2.9", NodeIP: "198.18.0.2", PKI: "/pki", Content: "/content", Path: "/usr/bin"})
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(raw), "\n---\n")
		raw = []byte(docs[0])
		var cfg struct {
			Kind    string         `json:"kind"`
			Options map[string]any `json:"options"`
			Patches []struct {
				Name      string `json:"name"`
				ExtraArgs []struct{ Key, Value string }
				ExtraEnvs []struct{ Name, Value string } `json:"extraEnvs"`
			} `json:"componentsPatches"`
		}
		if err := yaml.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Kind != "KwokctlConfiguration" || cfg.Options["runtime"] != "binary" || cfg.Options["kubeVersion"] != KubernetesVersion {
			t.Errorf("role %d: %s", tc.role, raw)
		}
		// Every binary kwokctl would otherwise download must be given.
		for key, tool := range map[string]string{
			"kubeApiserverBinary": "kube-apiserver", "etcdctlBinary": "etcdctl", "etcdutlBinary": "etcdutl",
			"kwokControllerBinary": "kwok", "kubectlBinary": "kubectl", "etcdBinary": "etcd",
		} {
			if cfg.Options[key] != "/t/"+tool {
				t.Errorf("role %d: %s = %v, want /t/%s", tc.role, key, cfg.Options[key], tool)
			}
		}
		if _, disabled := cfg.Options["disable"]; disabled {
			t.Errorf("role %d: disable = %v, want every component", tc.role, cfg.Options["disable"])
		}
		if len(cfg.Patches) == 0 || cfg.Patches[0].Name != "kube-apiserver" || cfg.Patches[0].ExtraArgs[0].Value != "192.0.2.9" {
			t.Errorf("role %d: patches %+v", tc.role, cfg.Patches)
		}
		args := map[string]string{}
		envs := map[string]string{}
		for _, p := range cfg.Patches {
			for _, a := range p.ExtraArgs {
				if args[p.Name+" --"+a.Key] != "" {
					args[p.Name+" --"+a.Key] += ","
				}
				args[p.Name+" --"+a.Key] += a.Value
			}
			for _, e := range p.ExtraEnvs {
				envs[p.Name+" "+e.Name] = e.Value
			}
		}
		if tc.role == Host && (cfg.Options["kubeControllerManagerNodeMonitorGracePeriodMilliseconds"] != float64(HostNodeGraceMilliseconds) ||
			cfg.Options["nodeLeaseDurationSeconds"] != float64(HostNodeLeaseSeconds) || cfg.Options["heartbeatFactor"] != float64(1)) {
			t.Errorf("host: node grace %v, node lease %v; want %d ms and %d s", cfg.Options["kubeControllerManagerNodeMonitorGracePeriodMilliseconds"],
				cfg.Options["nodeLeaseDurationSeconds"], HostNodeGraceMilliseconds, HostNodeLeaseSeconds)
		}
		if tc.role == Host {
			// The host verifies the provider's kubelet serving certificate, signed by its CA.
			for key, want := range map[string]string{
				"kube-apiserver --kubelet-certificate-authority":     "/pki/ca.crt",
				"kube-apiserver --kubelet-client-certificate":        "/pki/admin.crt",
				"kube-controller-manager --cluster-signing-key-file": "/pki/ca.key",
				// The host's kwok runs its own nodes only, not the virtual nodes.
				"kwok-controller --manage-all-nodes":                      "false",
				"kwok-controller --manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake",
				"kube-apiserver --default-unreachable-toleration-seconds": DefaultTolerationSeconds,
			} {
				if args[key] != want {
					t.Errorf("host: %s = %q, want %q", key, args[key], want)
				}
			}
		}
		// Site nodes are at the kubelet network's address, which the sites' API servers dial.
		wantNodeIP := map[Role]string{Site: "198.18.0.2"}[tc.role]
		if got := args["kwok-controller --node-ip"]; got != wantNodeIP {
			t.Errorf("role %d: kwok-controller --node-ip = %q, want %q", tc.role, got, wantNodeIP)
		}
		wantPreferred := map[Role]string{Host: "InternalIP", Site: "InternalIP,Hostname"}[tc.role]
		if got := args["kube-apiserver --kubelet-preferred-address-types"]; got != wantPreferred {
			t.Errorf("role %d: kube-apiserver --kubelet-preferred-address-types = %q, want %q", tc.role, got, wantPreferred)
		}
		// Sites' kwok also reads the simulated resource metrics and the lab's Stage, from
		// files of its own.
		wantConfig := map[Role]string{Site: "/content/" + MetricsFile + ",/content/" + StagesFile}[tc.role]
		if got := args["kwok-controller --config"]; got != wantConfig {
			t.Errorf("role %d: kwok-controller --config = %q, want %q", tc.role, got, wantConfig)
		}
		// Sites' kwok finds the lab's tar shim before the system's.
		path := envs["kwok-controller PATH"]
		if first, _, _ := strings.Cut(path, string(os.PathListSeparator)); tc.role == Site && first != "/content/"+ShimDir ||
			tc.role == Host && path != "" {
			t.Errorf("role %d: kwok-controller PATH = %q, want the shims first on sites only", tc.role, path)
		}
		// Sites simulate container logs, exec, attach and port-forward with kwok.
		if wantDocs := map[Role]int{Host: 1, Site: 5}[tc.role]; len(docs) != wantDocs ||
			(tc.role == Site && (!strings.Contains(docs[1], "kind: ClusterLogs") || !strings.Contains(docs[2], "kind: ClusterExec") ||
				!strings.Contains(docs[3], "kind: ClusterAttach") || !strings.Contains(docs[4], "kind: ClusterPortForward"))) {
			t.Errorf("role %d: %d documents, want %d:\n%s", tc.role, len(docs), wantDocs, strings.Join(docs, "\n---\n"))
		}
	}
}

// The lab's own processes run as components of the cluster, as kwokctl runs its own.
func TestRenderComponents(t *testing.T) {
	raw, err := Render(Cluster{Role: Site, Tools: map[string]string{}, Components: []Component{
		{Name: "vk8s-site-storage", Binary: "/bin/vk8s", Args: []string{"lab", "site-storage", "--kubeconfig", "/c/kubeconfig"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Components []struct {
			Name   string   `json:"name"`
			Binary string   `json:"binary"`
			Args   []string `json:"args"`
		} `json:"components"`
	}
	if err := yaml.Unmarshal([]byte(strings.Split(string(raw), "\n---\n")[0]), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Components) != 1 || cfg.Components[0].Name != "vk8s-site-storage" || cfg.Components[0].Binary != "/bin/vk8s" ||
		strings.Join(cfg.Components[0].Args, " ") != "lab site-storage --kubeconfig /c/kubeconfig" {
		t.Errorf("components = %+v, want the site storage provisioner", cfg.Components)
	}
	raw, err = Render(Cluster{Role: Host, Tools: map[string]string{}})
	if err != nil || strings.Contains(string(raw), "components:") {
		t.Errorf("a cluster without components of the lab's lists some: %v\n%s", err, raw)
	}
}
