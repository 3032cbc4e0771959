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
	"hash/fnv"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports. The zero value is no range.
type PortRange struct {
	First int32
	Last  int32
}

// IsZero says whether r is the zero value (no range).
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Size is the number of ports in r.
func (r PortRange) Size() int { return int(r.Last-r.First) + 1 }

// Contains says whether port is in r.
func (r PortRange) Contains(port int32) bool { return port >= r.First && port <= r.Last }

func (r PortRange) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Validate checks that r is a range of valid ports.
func (r PortRange) Validate() error {
	if r.First < 1 || r.Last > 65535 || r.First > r.Last {
		return fmt.Errorf("port range %d-%d: want 1 <= first <= last <= 65535", r.First, r.Last)
	}
	return nil
}

// ParsePortRange parses "first-last" (e.g. "20000-23999"); the empty string is the zero
// range.
func ParsePortRange(s string) (PortRange, error) {
	if s == "" {
		return PortRange{}, nil
	}
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("port range %q: want first-last", s)
	}
	f, err1 := strconv.ParseInt(strings.TrimSpace(first), 10, 32)
	l, err2 := strconv.ParseInt(strings.TrimSpace(last), 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	r := PortRange{First: int32(f), Last: int32(l)}
	return r, r.Validate()
}

// portPool assigns the ports of a range to virtual nodes. A node keeps its port until it
// is released; a new node gets, in this order, the port it asks for (the one its Node
// object already advertises, so a restarted provider keeps every node's port), or the
// first free port from a place in the range derived from its name, so that the same set of
// nodes gets mostly the same ports even without that hint. It is not safe for concurrent
// use.
type portPool struct {
	r      PortRange
	byNode map[string]int32
	byPort map[int32]string
}

func newPortPool(r PortRange) *portPool {
	return &portPool{r: r, byNode: map[string]int32{}, byPort: map[int32]string{}}
}

// errPortsExhausted says that every port of the range is taken (or could not be used).
var errPortsExhausted = errors.New("no free port left in the node port range")

// assign returns node's port, choosing one when node has none. use is called on a
// candidate port before it is assigned (to open a listener on it); when it fails, the
// next candidate is tried.
func (p *portPool) assign(node string, preferred int32, use func(int32) error) (int32, error) {
	if port, ok := p.byNode[node]; ok {
		return port, nil
	}
	var errs []error
	try := func(port int32) bool {
		if _, taken := p.byPort[port]; taken {
			return false
		}
		if err := use(port); err != nil {
			errs = append(errs, err)
			return false
		}
		p.byNode[node], p.byPort[port] = port, node
		return true
	}
	if p.r.Contains(preferred) && try(preferred) {
		return preferred, nil
	}
	start := p.r.First + int32(nameHash(node)%uint32(p.r.Size()))
	for i := 0; i < p.r.Size(); i++ {
		port := p.r.First + (start-p.r.First+int32(i))%int32(p.r.Size())
		if try(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("virtual node %s: %w (%s): %w", node, errPortsExhausted, p.r, errors.Join(errs...))
}

// release frees node's port and returns it (0 when node had none).
func (p *portPool) release(node string) int32 {
	port, ok := p.byNode[node]
	if !ok {
		return 0
	}
	delete(p.byNode, node)
	delete(p.byPort, port)
	return port
}

func nameHash(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}
