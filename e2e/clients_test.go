package e2e

import (
	"testing"

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
