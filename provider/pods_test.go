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

package provider

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vk8s-io/vk8s/sitereg"
)

// TestLookAgainAfter: pods that wait for a site are looked at again at once when the site
// became usable since their sync found it not (nothing else would queue them: the Site's
// status did not change), in a second while it is not usable yet, and not while it is
// down.
func TestLookAgainAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		delay time.Duration
		look  bool
	}{
		{"usable now", nil, 0, true},
		{"new connection not synced yet", fmt.Errorf("site s: %w: node cache not synced yet", sitereg.ErrSiteNotConnected), time.Second, true},
		{"down", fmt.Errorf("site s: %w: %w: %w", sitereg.ErrSiteNotConnected, sitereg.ErrSiteDown, errors.New("connection refused")), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			delay, look := lookAgainAfter(nil, tc.err)
			if delay != tc.delay || look != tc.look {
				t.Errorf("lookAgainAfter(%v) = %s, %v; want %s, %v", tc.err, delay, look, tc.delay, tc.look)
			}
		})
	}
}
