package lab

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

func TestKubeletNetFor(t *testing.T) {
	_, bench, _ := net.ParseCIDR("198.18.0.0/15")
	seen := map[string]string{}
	for _, name := range []string{"vk8s", "e2e", "demo", "bench", "a", "a-very-long-lab-name-of-32-chars"} {
		k := kubeletNetFor(name)
		if k != kubeletNetFor(name) {
			t.Errorf("%s: not deterministic", name)
		}
		root, node := net.ParseIP(k.RootIP).To4(), net.ParseIP(k.NodeIP).To4()
		if root == nil || node == nil || !bench.Contains(root) || !bench.Contains(node) {
			t.Errorf("%s: %s and %s, want both in %s", name, k.RootIP, k.NodeIP, bench)
			continue
		}
		// One /30: .1 and .2 of a block of four.
		if root[3]%4 != 1 || node[3] != root[3]+1 || root[2] != node[2] {
			t.Errorf("%s: %s and %s are not the two hosts of one /30", name, k.RootIP, k.NodeIP)
		}
		for _, link := range []string{k.RootLink, k.NetnsLink} {
			if len(link) > 15 { // IFNAMSIZ - 1
				t.Errorf("%s: link name %q is longer than 15 characters", name, link)
			}
		}
		if k.Netns != "vk8s-lab-"+name || k.RootLink == k.NetnsLink {
			t.Errorf("%s: %+v", name, k)
		}
		if other, ok := seen[k.NodeIP]; ok {
			t.Errorf("%s and %s share %s", name, other, k.NodeIP)
		}
		seen[k.NodeIP] = name
	}
}

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

	lns, err := listenInNetns("/proc/self/ns/net", "127.0.0.1", []int{port})
	if errors.Is(err, os.ErrPermission) || err != nil && strings.Contains(err.Error(), "operation not permitted") {
		t.Skipf("entering a network namespace needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lns[0].Close() }()
	go relayAccept(lns[0], target.Addr().String())

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
