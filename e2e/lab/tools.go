package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// toolNames are the binaries a lab runs.
var toolNames = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
	"etcd", "etcdctl", "etcdutl", "kwok", "kwokctl",
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
