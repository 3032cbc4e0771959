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

package federation

import (
	"errors"
	"fmt"
	"strconv"
)

// Rejection says why a workload, a pod or a vk8s object cannot be admitted as written: its
// message names the field, the value and the fix, and Reason labels the webhook's
// vk8s_webhook_rejections_total. The Resolver returns one when a workload's annotations do
// not resolve; admission denies with it; the controllers leave such a workload alone until
// its next write. Use errors.As to tell it from a failure of the cache or the API server.
type Rejection struct {
	Reason  string
	Message string
}

func (r *Rejection) Error() string { return r.Message }

// Reasons of the Resolver's rejections, values of the reason label.
const (
	ReasonAnnotation  = "annotation"
	ReasonVirtualSite = "virtual-site"
	ReasonOverride    = "override"
	ReasonFlavor      = "flavor"
)

// Invalid returns a Rejection that reads "<field>: invalid value "<value>": <why>; <fix>",
// the form of package overrides' annotation errors.
func Invalid(reason, field string, value any, why, fix string) *Rejection {
	v := fmt.Sprint(value)
	if s, ok := value.(string); ok {
		v = strconv.Quote(s)
	}
	return &Rejection{Reason: reason, Message: fmt.Sprintf("%s: invalid value %s: %s; %s", field, v, why, fix)}
}

// Reject returns err as a Rejection with reason, or err itself when it is one already:
// the errors of packages overrides and placement name the field, the value and the fix.
func Reject(reason string, err error) *Rejection {
	var r *Rejection
	if errors.As(err, &r) {
		return r
	}
	return &Rejection{Reason: reason, Message: err.Error()}
}

// IsRejection says whether err is (or wraps) a Rejection.
func IsRejection(err error) bool {
	var r *Rejection
	return errors.As(err, &r)
}

// AnnotationPath returns metadata.annotations["<key>"].
func AnnotationPath(key string) string { return fmt.Sprintf("metadata.annotations[%q]", key) }
