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

package election

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// precision is what the two readings of the API server's clock may hide: both the Date
// header and managedFields times are whole seconds.
const precision = 2 * time.Second

// Prepare runs TakeOverStale before a process joins the election of Lease
// namespace/name, and logs what it did; an error only costs the wait TakeOverStale saves.
func Prepare(ctx context.Context, cfg *rest.Config, namespace, name string, leaseDuration time.Duration, log logr.Logger) {
	took, err := TakeOverStale(ctx, cfg, namespace, name, leaseDuration)
	switch {
	case err != nil:
		log.Error(err, "Could not check the leader election Lease; waiting it out")
	case took:
		log.Info("Took over a leader election Lease nobody renewed for longer than its duration", "lease", namespace+"/"+name)
	}
}

// TakeOverStale clears the holder of Lease namespace/name when, by the API server's
// clock, nobody has written it for longer than leaseDuration, and says whether it did.
// A missing Lease, one without a holder and one written recently are left alone. The
// update carries the Lease's resourceVersion, so it loses to any write in between.
func TakeOverStale(ctx context.Context, cfg *rest.Config, namespace, name string, leaseDuration time.Duration) (bool, error) {
	lease, now, err := get(ctx, cfg, namespace, name)
	if err != nil || lease == nil {
		return false, err
	}
	if !Stale(lease, now, leaseDuration) {
		return false, nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	lease.Spec.HolderIdentity = nil
	if _, err := cs.CoordinationV1().Leases(namespace).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return false, fmt.Errorf("clear the holder of stale Lease %s/%s: %w", namespace, name, err)
	}
	return true, nil
}

// Stale reports whether lease names a holder and was last written (the latest time of
// its managedFields, set by the API server) more than leaseDuration before now, the API
// server's time.
func Stale(lease *coordinationv1.Lease, now time.Time, leaseDuration time.Duration) bool {
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		return false
	}
	var last time.Time
	for _, f := range lease.ManagedFields {
		if f.Time != nil && f.Time.After(last) {
			last = f.Time.Time
		}
	}
	return !last.IsZero() && now.Sub(last) > leaseDuration+precision
}

// get reads the Lease and the API server's time of the answer (its Date header), which
// client-go's typed clients do not expose. A missing Lease is nil.
func get(ctx context.Context, cfg *rest.Config, namespace, name string) (*coordinationv1.Lease, time.Time, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, time.Time{}, err
	}
	u, err := url.JoinPath(cfg.Host, "/apis/coordination.k8s.io/v1/namespaces", namespace, "leases", name)
	if err != nil {
		return nil, time.Time{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read Lease %s/%s: %w", namespace, name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, time.Time{}, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, time.Time{}, nil
	case resp.StatusCode != http.StatusOK:
		return nil, time.Time{}, fmt.Errorf("read Lease %s/%s: %s: %s", namespace, name, resp.Status, body)
	}
	now, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read Lease %s/%s: the API server's Date %q: %w", namespace, name, resp.Header.Get("Date"), err)
	}
	lease := &coordinationv1.Lease{}
	if err := json.Unmarshal(body, lease); err != nil {
		return nil, time.Time{}, fmt.Errorf("read Lease %s/%s: %w", namespace, name, err)
	}
	return lease, now, nil
}
