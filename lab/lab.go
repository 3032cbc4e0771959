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
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says which lab to act on.
type Config struct {
	// Name of the lab; clusters are named <Name>-host and <Name>-site<i>.
	Name string
	// Sites is the number of site clusters Up makes. Zero: what the lab has, or 3 for a new lab.
	Sites int
	// Nodes is the number of kwok nodes per site. Zero: what the lab has, or 3 for a new lab.
	Nodes int
	// NodePods is how many pods each site node Up creates allows (its pods capacity and
	// allocatable, a kubelet's --max-pods). Zero: 110, a kubelet's default. Nodes the lab
	// already has keep theirs.
	NodePods int
	// Dir holds the lab's files. Empty: $XDG_STATE_HOME/vk8s/labs/<Name>.
	Dir string
	// Tools locates the binaries; Up and Down need them.
	Tools Tools
	// Log receives one line per step. Nil: discard.
	Log io.Writer
	// Vk8sBinary, when set, is the vk8s binary whose `provider` and `webhook` subcommands
	// Up runs against the host (`vk8s lab` passes itself). Empty: Up runs neither.
	Vk8sBinary string
	// LabBinary is the vk8s binary whose hidden `lab` subcommands run the lab's own
	// processes: the kubelet relay and the sites' storage provisioner. Empty: Vk8sBinary.
	// Without either, the site nodes stay at loopback (docs/lab.md, "The kubelet network")
	// and the sites bind no claims.
	LabBinary string
	// MetricsResolution is the lab's metrics-server scrape interval: every virtual node is
	// scraped once per interval, which with thousands of them can take more CPU than the
	// provider (make bench's 1,000 Sites). Zero: 15s; at least 10s (metrics-server's least).
	MetricsResolution time.Duration
	// ProviderReplicas is the number of provider processes Up runs; more than one share
	// the Sites (`vk8s provider --shard`, docs/provider.md). Zero: what the lab has, or 1.
	ProviderReplicas int
}

const (
	defaultSites = 3
	defaultNodes = 3
	maxSites     = 100
	maxNodes     = 500
	// maxProviderReplicas bounds ProviderReplicas; Down stops that many.
	maxProviderReplicas = 10

	// readyTimeout bounds the wait for one cluster's API server after kwokctl started it.
	readyTimeout = 2 * time.Minute
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`)

// Lab is one local fleet: a host cluster and its site clusters.
type Lab struct {
	cfg   Config
	log   io.Writer
	tools map[string]string
	// relay is the command that runs the kubelet relay; empty: none.
	relay []string
}

// state is what lab.json records, so later calls know the lab's shape without flags.
type state struct {
	Name     string       `json:"name"`
	Sites    int          `json:"sites"`
	Nodes    int          `json:"nodes"`
	Provider *daemonState `json:"provider,omitempty"`
	// ProviderReplicas is the number of provider processes (0: one); Providers are the
	// second and later.
	ProviderReplicas int            `json:"providerReplicas,omitempty"`
	Providers        []*daemonState `json:"providers,omitempty"`
	Webhook          *daemonState   `json:"webhook,omitempty"`
	// NodeIP is the site nodes' InternalIP, fixed when the sites are made: the namespace
	// end of the lab's kubelet network, or 127.0.0.1 (kubeletnet.go). Empty: a lab from
	// before it was recorded, whose kwok gives its nodes no InternalIP.
	NodeIP string `json:"nodeIP,omitempty"`
	// WebhookPort is where the lab's webhook listens, chosen once: the chart's
	// configurations call it (webhook.url), so it stays across restarts.
	WebhookPort int `json:"webhookPort,omitempty"`
}

// New validates cfg and returns the lab it names; nothing is started.
func New(cfg Config) (*Lab, error) {
	if !nameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("lab name %q: want 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit", cfg.Name)
	}
	if cfg.Sites < 0 || cfg.Sites > maxSites {
		return nil, fmt.Errorf("--sites %d: want 1 to %d", cfg.Sites, maxSites)
	}
	if cfg.Nodes < 0 || cfg.Nodes > maxNodes {
		return nil, fmt.Errorf("--nodes %d: want 1 to %d", cfg.Nodes, maxNodes)
	}
	if cfg.NodePods < 0 {
		return nil, fmt.Errorf("node pods %d: want 0 (110) or more", cfg.NodePods)
	}
	if cfg.MetricsResolution == 0 {
		cfg.MetricsResolution = defaultMetricsResolution
	}
	if cfg.MetricsResolution < minMetricsResolution {
		return nil, fmt.Errorf("metrics resolution %s: want at least %s (metrics-server's least), or 0 for %s", cfg.MetricsResolution, minMetricsResolution, defaultMetricsResolution)
	}
	if cfg.ProviderReplicas < 0 || cfg.ProviderReplicas > maxProviderReplicas {
		return nil, fmt.Errorf("--provider-replicas %d: want 1 to %d", cfg.ProviderReplicas, maxProviderReplicas)
	}
	if cfg.Dir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("lab folder: %w", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		cfg.Dir = filepath.Join(base, "vk8s", "labs", cfg.Name)
	}
	cfg.LabBinary = cmp.Or(cfg.LabBinary, cfg.Vk8sBinary)
	l := &Lab{cfg: cfg, log: cfg.Log}
	if cfg.LabBinary != "" {
		l.relay = []string{cfg.LabBinary, "lab", RelaySubcommand}
	}
	if l.log == nil {
		l.log = io.Discard
	}
	closeInheritedOnExec()
	return l, nil
}

// closeInheritedOnExec marks the file descriptors this process inherited (beyond stdin,
// stdout and stderr) close-on-exec, so that the lab's daemons, which outlive the command
// that started them, do not hold them: a lab brought up under `flock LOCK vk8s lab up`
// would otherwise hold LOCK for as long as it runs. Go opens its own files close-on-exec.
func closeInheritedOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return // not Linux: nothing to do
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// Dir is the folder that holds the lab's files.
func (l *Lab) Dir() string { return l.cfg.Dir }

func (l *Lab) workdir() string { return filepath.Join(l.cfg.Dir, "kwok") }

// ClusterName is the kwokctl name of a lab cluster: "host" or a site name.
func (l *Lab) ClusterName(cluster string) string { return l.cfg.Name + "-" + cluster }

func (l *Lab) clusterDir(cluster string) string {
	return filepath.Join(l.workdir(), "clusters", l.ClusterName(cluster))
}

// pkiDir holds a cluster's CA and admin certificate, as kwokctl writes them.
func (l *Lab) pkiDir(cluster string) string { return filepath.Join(l.clusterDir(cluster), "pki") }

// CACertPath is the CA of a lab cluster: it signs the admin certificate its API server
// presents to kubelets and, in the host, kubelet serving certificates.
func (l *Lab) CACertPath(cluster string) string { return filepath.Join(l.pkiDir(cluster), "ca.crt") }

// siteContentDir holds the logs and exec folder of the sites' simulated containers.
func (l *Lab) siteContentDir() string { return filepath.Join(l.cfg.Dir, "site-content") }

func (l *Lab) kubeconfigPath(cluster string) string {
	return filepath.Join(l.clusterDir(cluster), "kubeconfig.yaml")
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.log, "lab %s: %s\n", l.cfg.Name, fmt.Sprintf(format, args...))
}

// ErrNotUp says the lab, or one of its clusters, has not been made.
var ErrNotUp = errors.New("lab is not up")

// Kubeconfig returns the path of the kubeconfig of the host (cluster "" or "host") or of a
// site ("site2").
func (l *Lab) Kubeconfig(cluster string) (string, error) {
	if cluster == "" {
		cluster = "host"
	}
	p := l.kubeconfigPath(cluster)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: no cluster %s in lab %s (run `vk8s lab up --name %s`)", ErrNotUp, cluster, l.cfg.Name, l.cfg.Name)
	}
	return p, nil
}

// RESTConfig returns a client configuration for the host or a site.
func (l *Lab) RESTConfig(cluster string) (*rest.Config, error) {
	p, err := l.Kubeconfig(cluster)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", p)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", p, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// Sites returns the names of the lab's sites as lab.json records them.
func (l *Lab) Sites() ([]string, error) {
	st, err := l.readState()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, st.Sites)
	for i := 1; i <= st.Sites; i++ {
		names = append(names, SiteName(i))
	}
	return names, nil
}

func (l *Lab) statePath() string { return filepath.Join(l.cfg.Dir, "lab.json") }

func (l *Lab) readState() (state, error) {
	raw, err := os.ReadFile(l.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return state{}, fmt.Errorf("%w: %s has no lab.json (run `vk8s lab up --name %s`)", ErrNotUp, l.cfg.Dir, l.cfg.Name)
	}
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return state{}, fmt.Errorf("read %s: %w", l.statePath(), err)
	}
	return st, nil
}

func (l *Lab) writeState(st state) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(l.statePath(), raw)
}

// clusters lists the lab's clusters, host first.
func clusters(sites int) []string {
	out := []string{"host"}
	for i := 1; i <= sites; i++ {
		out = append(out, SiteName(i))
	}
	return out
}

// toolNames are the binaries a lab runs.
var toolNames = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
	"etcd", "etcdctl", "etcdutl", "kwok", "kwokctl", "helm",
}

// Tools locates the lab's binaries.
type Tools struct {
	// Dir holds every tool (hack/tools.sh dir). Empty: look each tool up on PATH.
	Dir string
}

// Path returns the absolute path of the named tool, or an error that says how to get it.
func (t Tools) Path(name string) (string, error) {
	if t.Dir == "" {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("tool %s not found on PATH: run `make tools` and set VK8S_TOOLS_DIR=$(make -s tools-dir)", name)
		}
		return filepath.Abs(p)
	}
	p := filepath.Join(t.Dir, name)
	if info, err := os.Stat(p); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", fmt.Errorf("tool %s not found in %s: run `make tools`", name, t.Dir)
	}
	return p, nil
}

// resolve returns the paths of every tool the lab needs, or the first that is missing.
func (t Tools) resolve() (map[string]string, error) {
	paths := make(map[string]string, len(toolNames))
	for _, name := range toolNames {
		p, err := t.Path(name)
		if err != nil {
			return nil, err
		}
		paths[name] = p
	}
	return paths, nil
}
