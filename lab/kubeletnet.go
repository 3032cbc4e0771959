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
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vk8s-io/vk8s/lab/relay"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The sites' kubelets are kwok, which listens on loopback. A site's API server does not
// proxy to a node at a loopback address (kube-apiserver refuses nodes/<node>/proxy to
// loopback and link-local addresses), and the node proxy is how vk8s and metrics-server
// read a site node's /metrics/resource and /stats/summary. Nor may kwok listen on a
// network address: it runs exec as a local command and authenticates nobody.
//
// So the lab gives the site nodes an address in a network namespace of its own, as a
// node's address is on a network: a veth pair whose root end is 198.18.x.y+1 and whose
// namespace end is +2 (RFC 2544's benchmarking range, routed nowhere), and a relay process
// that listens inside the namespace at +2:<kwok's port> for every site and connects to kwok
// at 127.0.0.1:<port>. kwok's --node-ip makes +2 each site node's InternalIP, which the
// sites' API servers dial. Every process on the machine reaches the namespace end through
// the veth's route; nothing outside does, because the lab sets this up only where the
// machine does not forward IPv4. Where it cannot (not root, no `ip`, forwarding on) the
// site nodes stay at 127.0.0.1: logs and exec still work, kubectl top has no numbers.

// kubeletNet is the lab's network namespace for the site nodes.
type kubeletNet struct {
	// Netns is the namespace's name (ip netns), RootLink and NetnsLink the veth ends.
	Netns, RootLink, NetnsLink string
	// RootIP is the root end's address, NodeIP the namespace end's: the site nodes' IP.
	RootIP, NodeIP string
}

// kubeletNetFor derives the namespace, links and addresses of lab name: a /30 of
// 198.18.0.0/15 chosen by the name's hash, so two labs rarely share one (and a lab that
// would is told so by `ip`).
func kubeletNetFor(name string) kubeletNet {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	sum := h.Sum32()
	block := sum % (1 << 15) // 32768 blocks of 4 addresses in 198.18.0.0/15
	base := uint32(198)<<24 | uint32(18)<<16 | block*4
	ip := func(off uint32) string {
		v := base + off
		return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
	}
	tag := fmt.Sprintf("%06x", sum&0xffffff)
	return kubeletNet{
		Netns: "vk8s-lab-" + name, RootLink: "vk" + tag + "r", NetnsLink: "vk" + tag + "n",
		RootIP: ip(1), NodeIP: ip(2),
	}
}

// netnsPath is where `ip netns` keeps the namespace.
func (k kubeletNet) netnsPath() string { return filepath.Join("/run/netns", k.Netns) }

// loopbackNodeIP is the site nodes' address where the lab has no network namespace.
const loopbackNodeIP = "127.0.0.1"

// ensureKubeletNet makes the lab's network namespace and veth pair, or checks that they
// are there; it returns why it cannot.
func (l *Lab) ensureKubeletNet(ctx context.Context) (kubeletNet, error) {
	k := kubeletNetFor(l.cfg.Name)
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(string(raw)) != "0" {
		return k, errors.New("the machine forwards IPv4 (net.ipv4.ip_forward is not 0), so the namespace would be reachable from its network")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return k, errors.New("no `ip` command (Debian's iproute2)")
	}
	if k.present(ctx) {
		return k, nil
	}
	l.removeKubeletNet(ctx)
	steps := [][]string{
		{"netns", "add", k.Netns},
		{"link", "add", k.RootLink, "type", "veth", "peer", "name", k.NetnsLink, "netns", k.Netns},
		{"addr", "add", k.RootIP + "/30", "dev", k.RootLink},
		{"link", "set", k.RootLink, "up"},
		{"-n", k.Netns, "addr", "add", k.NodeIP + "/30", "dev", k.NetnsLink},
		{"-n", k.Netns, "link", "set", k.NetnsLink, "up"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, "ip", s...).CombinedOutput(); err != nil {
			l.removeKubeletNet(ctx)
			return k, fmt.Errorf("ip %s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	l.logf("kubelet network: site nodes at %s in network namespace %s", k.NodeIP, k.Netns)
	return k, nil
}

// present says whether the namespace exists with its end of the veth at NodeIP, and the
// root end at RootIP.
func (k kubeletNet) present(ctx context.Context) bool {
	ns, err := exec.CommandContext(ctx, "ip", "-n", k.Netns, "-o", "addr", "show", "dev", k.NetnsLink).Output()
	if err != nil || !strings.Contains(string(ns), " "+k.NodeIP+"/30 ") {
		return false
	}
	root, err := exec.CommandContext(ctx, "ip", "-o", "addr", "show", "dev", k.RootLink).Output()
	return err == nil && strings.Contains(string(root), " "+k.RootIP+"/30 ")
}

// removeKubeletNet deletes the namespace (its veth end, and so the pair, goes with it) and
// the root end if it is left.
func (l *Lab) removeKubeletNet(ctx context.Context) {
	k := kubeletNetFor(l.cfg.Name)
	if _, err := exec.LookPath("ip"); err != nil {
		return
	}
	_ = exec.CommandContext(ctx, "ip", "netns", "del", k.Netns).Run()
	_ = exec.CommandContext(ctx, "ip", "link", "del", k.RootLink).Run()
}

// siteNodeNetwork decides the site nodes' address (st.NodeIP) when the lab has no sites
// yet, and makes sure the network namespace is there when they use it; it returns the
// namespace, or nil when the site nodes are at loopback.
func (l *Lab) siteNodeNetwork(ctx context.Context, st *state) (*kubeletNet, error) {
	k := kubeletNetFor(l.cfg.Name)
	switch {
	case st.NodeIP == "" && l.anySiteMade():
		// A lab from before the address was recorded: its kwok sets none.
		l.logf("kubelet network: this lab's sites predate it (site nodes at loopback); `vk8s lab down` and up again to get it")
		return nil, nil
	case st.NodeIP == "":
		st.NodeIP = loopbackNodeIP
		if len(l.relay) == 0 {
			l.logf("kubelet network: site nodes at %s (no command to run the kubelet relay: Config.LabBinary or Config.Vk8sBinary)", loopbackNodeIP)
			return nil, nil
		}
		if _, err := l.ensureKubeletNet(ctx); err != nil {
			l.logf("kubelet network: site nodes at %s, where their API servers proxy to none (no kubectl top numbers): %v", loopbackNodeIP, err)
			return nil, nil
		}
		st.NodeIP = k.NodeIP
		return &k, nil
	case st.NodeIP == loopbackNodeIP:
		return nil, nil
	}
	if len(l.relay) == 0 {
		return nil, fmt.Errorf("the site nodes are at %s, which needs the kubelet relay, and the lab has no command to run it (Config.LabBinary or Config.Vk8sBinary)", st.NodeIP)
	}
	if st.NodeIP != k.NodeIP {
		return nil, fmt.Errorf("lab.json puts the site nodes at %s, but lab %s's kubelet network is %s; run `vk8s lab down --name %s`", st.NodeIP, l.cfg.Name, k.NodeIP, l.cfg.Name)
	}
	if _, err := l.ensureKubeletNet(ctx); err != nil {
		return nil, fmt.Errorf("the site nodes are at %s, in network namespace %s: %w", k.NodeIP, k.Netns, err)
	}
	return &k, nil
}

// anySiteMade says whether a site cluster of the lab exists.
func (l *Lab) anySiteMade() bool {
	dirs, _ := filepath.Glob(filepath.Join(l.workdir(), "clusters", l.cfg.Name+"-site*"))
	return len(dirs) > 0
}

// siteKubeletPorts returns each site's kwok port, as its nodes advertise it.
func (l *Lab) siteKubeletPorts(ctx context.Context, sites int) ([]int, error) {
	var ports []int
	for i := 1; i <= sites; i++ {
		c, err := l.Client(SiteName(i))
		if err != nil {
			return nil, err
		}
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: NodeName(1)}, n); err != nil {
			return nil, fmt.Errorf("%s's kwok port: %w", SiteName(i), err)
		}
		p := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
		if p <= 0 {
			return nil, fmt.Errorf("%s's node %s advertises no kubelet port", SiteName(i), n.Name)
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// SiteNodeIP is the site nodes' InternalIP, and whether the sites' API servers proxy to
// it (it is not loopback: the lab runs its kubelet network).
func (l *Lab) SiteNodeIP() (string, bool) {
	st, err := l.readState()
	if err != nil || st.NodeIP == "" {
		return loopbackNodeIP, false
	}
	return st.NodeIP, st.NodeIP != loopbackNodeIP
}

// RelayComponent is the relay's name in Status.
const RelayComponent = "kubelet-relay"

// RelaySubcommand is the relay's subcommand of `vk8s lab`.
const RelaySubcommand = "kubelet-relay"

func (l *Lab) relayPIDPath() string   { return filepath.Join(l.cfg.Dir, "pids", RelayComponent+".pid") }
func (l *Lab) relayStatePath() string { return filepath.Join(l.cfg.Dir, RelayComponent+".json") }
func (l *Lab) relayLogPath() string   { return filepath.Join(l.cfg.Dir, "logs", RelayComponent+".log") }

// ensureRelay runs the relay for the sites' kwok ports, restarting it when it is not
// running, serves other ports or is another binary, and checks that every site's kwok
// answers through it.
func (l *Lab) ensureRelay(ctx context.Context, k kubeletNet, ports []int) error {
	slices.Sort(ports)
	// The state file holds the configuration the relay was started with.
	want := relay.Config{Netns: k.netnsPath(), Address: k.NodeIP, Ports: ports}
	var have relay.Config
	if raw, err := os.ReadFile(l.relayStatePath()); err == nil {
		_ = json.Unmarshal(raw, &have)
	}
	if pid := l.relayProcess().pid(); pid > 0 && have.Netns == want.Netns && have.Address == want.Address && slices.Equal(have.Ports, want.Ports) &&
		relayAnswers(ctx, k.NodeIP, ports) == nil {
		l.logf("%s: running", RelayComponent)
		return nil
	}
	if err := l.relayProcess().stop(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(l.relayLogPath()), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(l.relayLogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(l.relay[0], append(slices.Clone(l.relay[1:]), want.Args()...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: it outlives `vk8s lab up`, as kwokctl's processes do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	l.logf("%s: starting at %s for kwok ports %v (log %s)", RelayComponent, k.NodeIP, ports, l.relayLogPath())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", RelayComponent, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we wait
	if err := writeFile(l.relayPIDPath(), []byte(strconv.Itoa(cmd.Process.Pid))); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	raw, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(l.relayStatePath(), raw); err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if !ProcessRunning(cmd.Process.Pid) {
			return false, errors.New("it exited")
		}
		last = relayAnswers(ctx, k.NodeIP, ports)
		return last == nil, nil
	})
	if err != nil {
		_ = l.relayProcess().stop(ctx)
		raw, _ := os.ReadFile(l.relayLogPath())
		return fmt.Errorf("%s: kwok does not answer through it: %w (last: %w); log %s:\n%s", RelayComponent, err, last, l.relayLogPath(), tail(string(raw), 10))
	}
	return nil
}

// relayAnswers checks that kwok's /healthz answers at addr for every port, as a site's API
// server would reach it.
func relayAnswers(ctx context.Context, addr string, ports []int) error {
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	for _, p := range ports {
		u := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(addr, strconv.Itoa(p)))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	return nil
}
