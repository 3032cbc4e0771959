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

package sitereg

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRequestVerb(t *testing.T) {
	for _, tc := range []struct{ method, url, want string }{
		{http.MethodGet, "/version", "GET"},
		{http.MethodGet, "/api/v1/nodes?limit=1", "LIST"},
		{http.MethodGet, "/api/v1/nodes?watch=true&resourceVersion=1", "WATCH"},
		{http.MethodGet, "/api/v1/nodes/n1", "GET"},
		{http.MethodGet, "/api/v1/namespaces", "LIST"},
		{http.MethodGet, "/api/v1/namespaces/kube-system", "GET"},
		{http.MethodGet, "/api/v1/namespaces/ns/pods", "LIST"},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/p", "GET"},
		{http.MethodGet, "/api/v1/namespaces/ns/pods/p/log", "GET"},
		{http.MethodGet, "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies", "LIST"},
		{http.MethodGet, "/apis/networking.k8s.io/v1", "GET"},
		{http.MethodGet, "/apis/apps/v1/deployments", "LIST"},
		{http.MethodPost, "/api/v1/namespaces/ns/pods", "POST"},
		{http.MethodDelete, "/api/v1/namespaces/ns/pods/p", "DELETE"},
	} {
		if got := requestVerb(httptest.NewRequest(tc.method, tc.url, nil)); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.method, tc.url, got, tc.want)
		}
	}
}

func TestSiteLabel(t *testing.T) {
	if got := SiteLabel([]string{"b", "a"}); got != "a,b" {
		t.Errorf("SiteLabel(b, a) = %q, want a,b", got)
	}
	if got := SiteLabel([]string{"site1"}); got != "site1" {
		t.Errorf("SiteLabel(site1) = %q", got)
	}
}
