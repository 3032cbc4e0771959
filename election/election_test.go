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
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestStale(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	lease := func(holder string, written ...time.Duration) *coordinationv1.Lease {
		l := &coordinationv1.Lease{}
		if holder != "" {
			l.Spec.HolderIdentity = ptr.To(holder)
		}
		for _, ago := range written {
			l.ManagedFields = append(l.ManagedFields, metav1.ManagedFieldsEntry{Time: &metav1.Time{Time: now.Add(-ago)}})
		}
		return l
	}
	for _, tc := range []struct {
		name  string
		lease *coordinationv1.Lease
		want  bool
	}{
		{"written 10 minutes ago", lease("a", 10*time.Minute), true},
		{"written within the duration", lease("a", 5*time.Second), false},
		{"written just past the duration, within the clocks' precision", lease("a", 13*time.Second), false},
		{"past the duration and the precision", lease("a", 15*time.Second), true},
		{"the latest write counts", lease("a", 10*time.Minute, 3*time.Second), false},
		{"no holder: nothing to take over", lease("", 10*time.Minute), false},
		{"no write time: never taken", lease("a"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Stale(tc.lease, now, 12*time.Second); got != tc.want {
				t.Errorf("Stale = %v, want %v", got, tc.want)
			}
		})
	}
}
