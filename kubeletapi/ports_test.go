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

package kubeletapi

import (
	"errors"
	"fmt"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    PortRange
		wantErr bool
	}{
		{"", PortRange{}, false},
		{"20000-23999", PortRange{20000, 23999}, false},
		{" 1 - 1 ", PortRange{1, 1}, false},
		{"20000", PortRange{}, true},
		{"b-a", PortRange{}, true},
		{"30000-20000", PortRange{30000, 20000}, true},
		{"0-10", PortRange{0, 10}, true},
		{"60000-70000", PortRange{60000, 70000}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePortRange(tc.in)
			if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
				t.Errorf("ParsePortRange(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestPortPool(t *testing.T) {
	ok := func(int32) error { return nil }
	r := PortRange{20000, 20003}

	t.Run("preferred, then stable, then released", func(t *testing.T) {
		p := newPortPool(r)
		if got, _ := p.assign("a", 20002, ok); got != 20002 {
			t.Errorf("preferred port: got %d", got)
		}
		if got, _ := p.assign("a", 20000, ok); got != 20002 {
			t.Errorf("second call: got %d, want the same port", got)
		}
		if got, _ := p.assign("b", 20002, ok); got == 20002 {
			t.Error("b got a's port")
		}
		if got := p.release("a"); got != 20002 {
			t.Errorf("release: %d", got)
		}
		if got, _ := p.assign("c", 20002, ok); got != 20002 {
			t.Errorf("released port not reused: %d", got)
		}
	})
	t.Run("preferred outside the range is ignored", func(t *testing.T) {
		p := newPortPool(r)
		got, err := p.assign("a", 10250, ok)
		if err != nil || !r.Contains(got) {
			t.Errorf("got %d, %v", got, err)
		}
	})
	t.Run("same names, same ports", func(t *testing.T) {
		big := PortRange{20000, 29999}
		p1, p2 := newPortPool(big), newPortPool(big)
		for i := range 50 {
			n := fmt.Sprintf("site1-node%d", i)
			a, _ := p1.assign(n, 0, ok)
			b, _ := p2.assign(n, 0, ok)
			if a != b {
				t.Fatalf("%s: %d and %d", n, a, b)
			}
		}
	})
	t.Run("unusable ports are skipped", func(t *testing.T) {
		p := newPortPool(r)
		busy := func(port int32) error {
			if port != 20001 {
				return errors.New("address already in use")
			}
			return nil
		}
		if got, err := p.assign("a", 20000, busy); got != 20001 || err != nil {
			t.Errorf("got %d, %v; want 20001", got, err)
		}
	})
	t.Run("exhausted", func(t *testing.T) {
		p := newPortPool(r)
		for i := range r.Size() {
			if _, err := p.assign(fmt.Sprint(i), 0, ok); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.assign("one-too-many", 0, ok); !errors.Is(err, errPortsExhausted) {
			t.Errorf("error %v, want errPortsExhausted", err)
		}
	})
}
