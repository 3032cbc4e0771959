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

// Package relay is the lab's kubelet relay (vk8s lab kubelet-relay): it listens inside the
// lab's network namespace at the site nodes' address, at every site's kwok port, and
// copies each connection to and from kwok on loopback. A site's API server proxies to a
// node only at a network address, and kwok must not listen on one (its exec runs local
// commands and it authenticates nobody). docs/lab.md, "The kubelet network", says why.
package relay

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// loopback is where kwok listens.
const loopback = "127.0.0.1"

// Config is what the relay serves: inside the network namespace at path Netns,
// Address:port for every port of Ports, connected to 127.0.0.1:port.
type Config struct {
	Netns   string `json:"netns"`
	Address string `json:"address"`
	Ports   []int  `json:"ports"`
}

// Args are the flags of vk8s lab kubelet-relay that give cfg.
func (c Config) Args() []string {
	ports := make([]string, len(c.Ports))
	for i, p := range c.Ports {
		ports[i] = strconv.Itoa(p)
	}
	return []string{"--netns", c.Netns, "--address", c.Address, "--ports", strings.Join(ports, ",")}
}

// ParsePorts parses the comma-separated ports of --ports.
func ParsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("--ports %q: want comma-separated port numbers", s)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Run serves cfg until ctx ends, writing one line about what it serves to log.
func Run(ctx context.Context, cfg Config, log io.Writer) error {
	if cfg.Netns == "" || cfg.Address == "" || len(cfg.Ports) == 0 {
		return fmt.Errorf("kubelet relay: a network namespace, an address and ports are required")
	}
	lns, err := Listen(cfg.Netns, cfg.Address, cfg.Ports)
	if err != nil {
		return err
	}
	for i, ln := range lns {
		go Serve(ln, net.JoinHostPort(loopback, strconv.Itoa(cfg.Ports[i])))
	}
	fmt.Fprintf(log, "kubelet relay: %s ports %v in %s -> %s\n", cfg.Address, cfg.Ports, cfg.Netns, loopback)
	<-ctx.Done()
	for _, ln := range lns {
		_ = ln.Close()
	}
	return nil
}

// Listen opens a listener at addr:port for every port inside the network namespace
// at path. A socket stays in the namespace it was made in, so only the thread that makes
// them enters it, and it leaves again before any other work runs on it.
func Listen(path, addr string, ports []int) ([]net.Listener, error) {
	target, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = target.Close() }()
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer func() { _ = own.Close() }()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	var lns []net.Listener
	var lerr error
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err != nil {
			lerr = err
			break
		}
		lns = append(lns, ln)
	}
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it rather than reuse it in the
		// wrong namespace.
		return nil, fmt.Errorf("leave network namespace %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return nil, lerr
	}
	return lns, nil
}

// Serve connects every connection ln accepts to target, until ln is closed.
func Serve(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go relayConn(c, target)
	}
}

// relayConn copies c to and from a new connection to target, passing each direction's
// end on as a half close.
func relayConn(c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	t, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubelet relay: dial %s: %v\n", target, err)
		return
	}
	defer func() { _ = t.Close() }()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(t, c)
	go pipe(c, t)
	wg.Wait()
}
