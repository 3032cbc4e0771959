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

package placement

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
)

// ReplicaWrite is a write of a workload's replica count (or a Job's parallelism,
// completions or backoffLimit) as admission sees it: the value written, the one it replaces, and vk8s'
// bookkeeping.
type ReplicaWrite struct {
	// Create: the workload is being created.
	Create bool
	// Field names the count in messages: spec.replicas, spec.parallelism, ...
	Field string
	// Total and OldTotal are the count written and the one before (the sum over sites).
	Total, OldTotal int32
	// R and OldR are vk8s.io/replicas-per-site (or completions-per-site) as written and
	// before.
	R, OldR string
	// Applied and OldApplied are the count in kubectl's last-applied-configuration.
	Applied, OldApplied *int32
	// OldPlacement is vk8s.io/placement before the write.
	OldPlacement string
}

// ErrInvalidPerSite says that a per-site annotation is not a whole number.
var ErrInvalidPerSite = errors.New("not a whole number of replicas per site")

// PerSite returns R for the write, and whether it was derived from a total (derive). The
// rules (docs/webhook.md, "Replicas"):
//
//  1. On create, spec.replicas is R, as in the manifest, unless vk8s.io/replicas-per-site
//     says otherwise (an exported object created again).
//  2. A write that changes vk8s.io/replicas-per-site sets R.
//  3. A write that drops vk8s.io/replicas-per-site and changes spec.replicas re-declares
//     the manifest (server-side apply, kubectl replace): spec.replicas is R.
//  4. A client-side kubectl apply whose manifest changes spec.replicas: it is R.
//  5. Any other write that changes spec.replicas (kubectl edit, patch) writes the total:
//     R is derived from it.
//  6. Otherwise R stays, derived from the total when a write through the scale
//     subresource left the annotation behind.
//
// Its errors name the field, the value and the fix: derive's, with spec.replicas replaced
// by Field, and one wrapping ErrInvalidPerSite for an annotation that is not a number.
func (w ReplicaWrite) PerSite(derive func(total int32) (int32, error)) (int32, bool, error) {
	var r int32
	if w.R != "" {
		v, err := strconv.ParseInt(strings.TrimSpace(w.R), 10, 32)
		if err != nil || v < 0 {
			key := vk8sv1.AnnotationReplicasPerSite
			switch {
			case strings.HasSuffix(w.Field, "completions"):
				key = vk8sv1.AnnotationCompletionsPerSite
			case strings.HasSuffix(w.Field, "backoffLimit"):
				key = vk8sv1.AnnotationBackoffLimitPerSite
			}
			return 0, false, fmt.Errorf("metadata.annotations[%q]: invalid value %q: %w; write a number such as \"3\", or remove it and set %s",
				key, w.R, ErrInvalidPerSite, w.Field)
		}
		r = int32(v)
	}
	fromTotal := func(total int32) (int32, bool, error) {
		v, err := derive(total)
		if err != nil {
			return 0, false, errors.New(strings.Replace(err.Error(), "spec.replicas", w.Field, 1))
		}
		return v, true, nil
	}
	switch {
	case w.Create && w.R != "":
		return r, false, nil
	case w.Create:
		return w.Total, false, nil
	case w.R != "" && w.R != w.OldR:
		return r, false, nil
	case w.R == "" && w.OldR != "" && w.Total != w.OldTotal:
		return w.Total, false, nil
	case w.Applied != nil && (w.OldApplied == nil || *w.Applied != *w.OldApplied) && *w.Applied == w.Total:
		return w.Total, false, nil
	case w.Total != w.OldTotal:
		return fromTotal(w.Total)
	case w.OldR == "":
		return w.Total, false, nil
	}
	oldR, err := strconv.ParseInt(w.OldR, 10, 32)
	if err != nil {
		return fromTotal(w.OldTotal)
	}
	if l, err := ParseLayout(w.OldPlacement); err == nil && l.Counts != nil && l.Total() != w.OldTotal {
		return fromTotal(w.OldTotal)
	}
	return int32(oldR), false, nil
}
