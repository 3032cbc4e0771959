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

package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRelay runs the relay's listener and copying in this process's own network
// namespace: what a client sends reaches the target, the answer comes back, and each
// side's end of input is passed on (a client that half-closes gets the target's reply).
func TestRelay(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = target.Close() }()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() {
				// Answers only once its input ends, as tar reading an archive would.
				in, _ := io.ReadAll(c)
				_, _ = c.Write([]byte("got " + strings.ToUpper(string(in))))
				_ = c.Close()
			}()
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	_ = free.Close()

	lns, err := Listen("/proc/self/ns/net", "127.0.0.1", []int{port})
	if errors.Is(err, os.ErrPermission) || err != nil && strings.Contains(err.Error(), "operation not permitted") {
		t.Skipf("entering a network namespace needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lns[0].Close() }()
	go Serve(lns[0], target.Addr().String())

	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "got HELLO" {
		t.Errorf("through the relay: %q, want %q", got, "got HELLO")
	}
}

func TestConfigArgsRoundTrip(t *testing.T) {
	c := Config{Netns: "/run/netns/vk8s-lab-x", Address: "198.18.0.2", Ports: []int{10250, 10251}}
	args := c.Args()
	if strings.Join(args, " ") != "--netns /run/netns/vk8s-lab-x --address 198.18.0.2 --ports 10250,10251" {
		t.Errorf("args %q", args)
	}
	ports, err := ParsePorts(args[5])
	if err != nil || len(ports) != 2 || ports[0] != 10250 || ports[1] != 10251 {
		t.Errorf("ParsePorts(%q) = %v, %v", args[5], ports, err)
	}
	for _, bad := range []string{"", "x", "0", "70000", "1,,2"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
}
