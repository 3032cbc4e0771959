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

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/lab"
)

// The provider and the webhook of every test run as the chart's ServiceAccounts (the lab
// installs charts/vk8s into the host), so the suite proves the chart's RBAC is enough: a
// call the chart's roles refuse fails the suite, even when the component retried and the
// test passed. In-process components report through their client's transport; processes
// through their log files.
var forbidden struct {
	mu    sync.Mutex
	calls []string
}

// rbacDenied is how the API server words a refusal of RBAC ("User ... cannot get resource
// ..."); other 403s (a namespace being terminated) are not about rights. The quotes are
// escaped in a JSON body and in a quoted log value.
var rbacDenied = regexp.MustCompile(`is forbidden: User \\*"[^"\\]+\\*" cannot `)

// componentConfig is the host as the chart's ServiceAccount of component ("provider",
// "webhook"), with every refusal of RBAC recorded for TestMain.
func componentConfig(t *testing.T, component string) *rest.Config {
	t.Helper()
	cfg, err := fleet.ComponentConfig(component)
	if err != nil {
		t.Fatal(err)
	}
	recordForbidden(cfg, component)
	return cfg
}

// recordForbidden makes cfg's client record every 403 of RBAC it gets, with who, the verb
// and the URL.
func recordForbidden(cfg *rest.Config, who string) {
	cfg.Wrap(forbiddenRecorder(who))
}

// forbiddenRecorder wraps a transport to record every 403 of RBAC it gets, with who, the
// verb and the URL. The site registry of the providers the tests run wraps every site
// connection with it (sitereg.Config.WrapTransport): the lab joins its sites as `vk8s
// site join` does, so a site call that the site ClusterRole of package siteadm refuses
// fails the suite.
func forbiddenRecorder(who string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err != nil || resp.StatusCode != http.StatusForbidden {
				return resp, err
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
			if rbacDenied.Match(body) {
				forbidden.mu.Lock()
				forbidden.calls = append(forbidden.calls, fmt.Sprintf("%s: %s %s: 403 %s", who, req.Method, req.URL.RequestURI(), firstLine(body)))
				forbidden.mu.Unlock()
			}
			return resp, nil
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 300 {
		line = line[:300]
	}
	return string(line)
}

// watchLogForbidden reads, when t ends (after the process stopped, before its temporary
// folder goes), the log of a vk8s process that ran as a chart's ServiceAccount.
func watchLogForbidden(t *testing.T, path string) {
	t.Cleanup(func() {
		calls := logForbidden(path)
		forbidden.mu.Lock()
		defer forbidden.mu.Unlock()
		forbidden.calls = append(forbidden.calls, calls...)
	})
}

// forbiddenCalls returns every refusal of RBAC recorded in-process, in the logs of
// processes tests ran, or in the logs of the lab's own processes (when it runs them).
func forbiddenCalls(l *lab.Lab) []string {
	forbidden.mu.Lock()
	defer forbidden.mu.Unlock()
	out := append([]string(nil), forbidden.calls...)
	for _, c := range []string{"vk8s-provider", "vk8s-webhook"} {
		out = append(out, logForbidden(filepath.Join(l.Dir(), "logs", c+".log"))...)
	}
	return out
}

// logForbidden returns the lines of a log that tell of a refusal of RBAC.
func logForbidden(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rbacDenied.Match(sc.Bytes()) {
			out = append(out, fmt.Sprintf("%s: %s", filepath.Base(path), firstLine(sc.Bytes())))
		}
	}
	return out
}

// serviceAccountConfig is the host as ServiceAccount ns/name, with a token of an hour
// (TokenRequest) and every refusal of RBAC recorded: for the components of another release
// of the chart (TestChart).
func serviceAccountConfig(t *testing.T, ns, name string) *rest.Config {
	t.Helper()
	tr, err := clientset(t, "host").CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of ServiceAccount %s/%s: %v", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(adminConfig(t))
	cfg.BearerToken = tr.Status.Token
	recordForbidden(cfg, ns+"/"+name)
	return cfg
}
