package e2e

import (
	"testing"

	"k8s.io/client-go/kubernetes"
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
