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
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func hostClient(t *testing.T) client.Client { return siteClient(t, "host") }

// siteClient returns a client for a cluster of the fleet: "host" or a site name.
func siteClient(t *testing.T, cluster string) client.Client {
	t.Helper()
	c, err := fleet.Client(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clientset returns a client-go clientset for a cluster of the fleet: "host" or a site
// name, for what the controller-runtime client does not do (subresources, raw paths).
func clientset(t *testing.T, cluster string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := fleet.RESTConfig(cluster)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// adminConfig is the host as the lab's admin: for components a test runs with names of
// its own, which the chart's roles do not cover.
func adminConfig(t *testing.T) *rest.Config {
	t.Helper()
	cfg, err := fleet.RESTConfig("host")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
