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
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubeconfigRefusesBadInputBeforeTheHost: flags are checked before the host is
// reached (the kubeconfig's server does not answer), each error naming the flag.
func TestKubeconfigRefusesBadInputBeforeTheHost(t *testing.T) {
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	const adminConfig = `apiVersion: v1
kind: Config
clusters:
- name: host
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: admin
  user: {token: admin}
contexts:
- name: admin@host
  context: {cluster: host, user: admin}
current-context: admin@host
`
	if err := os.WriteFile(admin, []byte(adminConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--namespace is required"},
		{[]string{"-n", "demo", "--ttl", "1m"}, "--ttl 1m0s"},
		{[]string{"-n", "demo", "--user", "Team_A"}, `--user "Team_A"`},
		{[]string{"-n", "demo", "-o", "yaml"}, "-o names the file"},
		{[]string{"-n", "demo", "-o", admin}, "is the admin's kubeconfig"},
		{[]string{"-n", "demo", "-o", filepath.Join(t.TempDir(), "no", "such", "folder", "k")}, "-o "},
		{[]string{"-n", "demo", "--context", "nope"}, `context "nope"`},
	} {
		_, err := run(t, append([]string{"kubeconfig", "--kubeconfig", admin}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vk8s kubeconfig %v: error %v, want one that says %q", tc.args, err, tc.want)
		}
	}
	if raw, err := os.ReadFile(admin); err != nil || string(raw) != adminConfig {
		t.Errorf("the admin's kubeconfig changed: %q, %v", raw, err)
	}
}
