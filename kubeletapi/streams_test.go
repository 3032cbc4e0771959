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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	clientexec "k8s.io/client-go/util/exec"
	utilexec "k8s.io/utils/exec"
)

// siteKubelet makes a fake site serve exec, attach and port-forward with virtual-kubelet's
// own handlers (which speak the kubelet's streaming protocols, SPDY), so that the whole
// path client -> Server -> site API server is exercised. As kube-apiserver does, the site
// answers a WebSocket exec or attach (remotecommand v5, which the Server prefers) with
// apiserver's stream translator in front of the kubelet's SPDY, unless spdyOnly: then the
// Server falls back to SPDY. It records what the site was asked.
type siteKubelet struct {
	spdyOnly bool
	// attachWaits keeps attach streams open until the client goes, as kwok's attach, which
	// follows a log file, does after the container has exited.
	attachWaits bool

	mu        sync.Mutex
	cmd       []string
	ns, pod   string
	tty       bool
	resized   []api.TermSize
	fwdPorts  []int32
	protocols []string // "websocket" or "spdy", per exec or attach
	// stop ends the handlers that wait for the client (command "wait", attachWaits).
	stop chan struct{}
}

func (k *siteKubelet) install(t *testing.T, fs *fakeSite) {
	k.stop = make(chan struct{})
	r := mux.NewRouter()
	r.HandleFunc("/api/v1/namespaces/{namespace}/pods/{pod}/exec", api.HandleContainerExec(
		func(ctx context.Context, ns, pod, _ string, cmd []string, a api.AttachIO) error {
			k.mu.Lock()
			k.cmd, k.ns, k.pod, k.tty = cmd, ns, pod, a.TTY()
			k.mu.Unlock()
			switch cmd[0] {
			case "fail":
				return utilexec.CodeExitError{Err: errors.New("exit status 3"), Code: 3}
			case "cat":
				_, err := io.Copy(a.Stdout(), a.Stdin())
				return err
			case "wc":
				// Answers only once stdin has ended, as tar -x does.
				n, err := io.Copy(io.Discard, a.Stdin())
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.Stdout(), "%d bytes", n)
				return err
			case "wait":
				// A command that runs until the client goes.
				_, _ = io.WriteString(a.Stdout(), "started")
				k.wait(ctx)
				return nil
			case "resize":
				sz := <-a.Resize()
				k.mu.Lock()
				k.resized = append(k.resized, sz)
				k.mu.Unlock()
				_, err := fmt.Fprintf(a.Stdout(), "%dx%d", sz.Width, sz.Height)
				return err
			}
			_, _ = io.WriteString(a.Stdout(), "out:"+strings.Join(cmd, " "))
			_, err := io.WriteString(a.Stderr(), "err")
			return err
		})).Methods(http.MethodPost, http.MethodGet)
	r.HandleFunc("/api/v1/namespaces/{namespace}/pods/{pod}/attach", api.HandleContainerAttach(
		func(ctx context.Context, ns, pod, _ string, a api.AttachIO) error {
			k.mu.Lock()
			k.ns, k.pod = ns, pod
			k.mu.Unlock()
			_, err := io.WriteString(a.Stdout(), "attached")
			if k.attachWaits {
				k.wait(ctx)
			}
			return err
		})).Methods(http.MethodPost, http.MethodGet)
	r.HandleFunc("/api/v1/namespaces/{namespace}/pods/{pod}/portforward", api.HandlePortForward(
		func(_ context.Context, ns, pod string, port int32, s io.ReadWriteCloser) error {
			k.mu.Lock()
			k.ns, k.pod = ns, pod
			k.fwdPorts = append(k.fwdPorts, port)
			k.mu.Unlock()
			if port == 9999 {
				return errors.New("connection refused")
			}
			_, err := io.Copy(s, s)
			return err
		})).Methods(http.MethodPost, http.MethodGet)
	kubelet := httptest.NewServer(r)
	// Cleanups run last first: the waiting handlers end before the servers close.
	t.Cleanup(kubelet.Close)
	t.Cleanup(func() { close(k.stop) })
	fs.mux.HandleFunc("/api/v1/namespaces/", func(w http.ResponseWriter, req *http.Request) {
		q := kubeletQuery(req.URL.Query())
		stream := strings.HasSuffix(req.URL.Path, "/exec") || strings.HasSuffix(req.URL.Path, "/attach")
		if stream && !k.spdyOnly && wsstream.IsWebSocketRequestWithStreamCloseProtocol(req) {
			k.record("websocket")
			u, _ := url.Parse(kubelet.URL + req.URL.Path + "?" + q.Encode())
			proxy.NewStreamTranslatorHandler(u, nil, 0, proxy.Options{
				Stdin: q.Get("input") == "1", Stdout: q.Get("output") == "1", Stderr: q.Get("error") == "1", Tty: q.Get("tty") == "1",
			}).ServeHTTP(w, req)
			return
		}
		if stream && !wsstream.IsWebSocketRequest(req) {
			k.record("spdy")
		}
		req.URL.RawQuery = q.Encode()
		r.ServeHTTP(w, req)
	})
}

func (k *siteKubelet) record(protocol string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.protocols = append(k.protocols, protocol)
}

// wait returns when the client has gone or the test ends.
func (k *siteKubelet) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-k.stop:
	}
}

// kubeletQuery rewrites the query of pods/exec and pods/attach as the API server does
// when it calls the kubelet: stdin=true becomes input=1, and so on.
func kubeletQuery(q url.Values) url.Values {
	for api, kubelet := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"} {
		if v := q.Get(api); v != "" {
			q.Del(api)
			if v == "true" {
				q.Set(kubelet, "1")
			}
		}
	}
	return q
}

func TestExecAttach(t *testing.T) {
	w := newWorld(t)
	k := &siteKubelet{}
	k.install(t, w.site1)
	ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})

	for _, tc := range []struct {
		name       string
		path       string
		query      url.Values
		stdin      string
		tty        bool
		resize     bool
		wantOut    string
		wantErr    string
		wantExit   int
		wantCmd    []string
		wantErrMsg string
	}{
		{name: "exec", path: "/exec/demo/web-1/app", query: url.Values{"command": {"echo", "hi"}, "output": {"1"}, "error": {"1"}},
			wantOut: "out:echo hi", wantErr: "err", wantCmd: []string{"echo", "hi"}},
		{name: "exec with stdin", path: "/exec/demo/web-1/app", query: url.Values{"command": {"cat"}, "input": {"1"}, "output": {"1"}},
			stdin: "hello through the site", wantOut: "hello through the site", wantCmd: []string{"cat"}},
		{name: "exit code", path: "/exec/demo/web-1/app", query: url.Values{"command": {"fail"}, "output": {"1"}},
			wantExit: 3, wantCmd: []string{"fail"}},
		{name: "tty and resize", path: "/exec/demo/web-1/app", query: url.Values{"command": {"resize"}, "input": {"1"}, "output": {"1"}, "tty": {"1"}},
			tty: true, resize: true, wantOut: "120x40", wantCmd: []string{"resize"}},
		{name: "attach", path: "/attach/demo/web-1/app", query: url.Values{"output": {"1"}}, wantOut: "attached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(ts.ts.URL + tc.path + "?" + tc.query.Encode())
			ex, err := remotecommand.NewSPDYExecutor(ts.restConfig(""), http.MethodPost, u)
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			so := remotecommand.StreamOptions{Stdout: &stdout, Tty: tc.tty}
			if tc.query.Get("error") == "1" {
				so.Stderr = &stderr
			}
			if tc.query.Get("input") == "1" {
				so.Stdin = strings.NewReader(tc.stdin)
			}
			if tc.resize {
				so.TerminalSizeQueue = &oneSize{size: remotecommand.TerminalSize{Width: 120, Height: 40}}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err = ex.StreamWithContext(ctx, so)
			var exit clientexec.CodeExitError
			switch {
			case tc.wantExit != 0:
				if !errors.As(err, &exit) || exit.Code != tc.wantExit {
					t.Fatalf("error %v, want exit code %d", err, tc.wantExit)
				}
			case err != nil:
				t.Fatal(err)
			}
			if stdout.String() != tc.wantOut || stderr.String() != tc.wantErr {
				t.Errorf("stdout %q stderr %q, want %q %q", stdout.String(), stderr.String(), tc.wantOut, tc.wantErr)
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if k.ns != "acme-demo" || k.pod != "web-1" {
				t.Errorf("site pod %s/%s, want acme-demo/web-1", k.ns, k.pod)
			}
			if tc.wantCmd != nil && strings.Join(k.cmd, " ") != strings.Join(tc.wantCmd, " ") {
				t.Errorf("site ran %q, want %q", k.cmd, tc.wantCmd)
			}
			if tc.tty != k.tty && tc.wantCmd != nil {
				t.Errorf("site tty %v, want %v", k.tty, tc.tty)
			}
		})
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if want := strings.Repeat("websocket ", 5); strings.Join(k.protocols, " ")+" " != want {
		t.Errorf("the site was asked with %v, want WebSockets (remotecommand v5) every time", k.protocols)
	}
}

// streamHost runs exec or attach against ts as the host's API server would (SPDY), with
// stdin, and returns its stdout and error.
func streamHost(ctx context.Context, t *testing.T, ts *testServer, path string, query url.Values, stdin io.Reader, stdout io.Writer) error {
	t.Helper()
	u, _ := url.Parse(ts.ts.URL + path + "?" + query.Encode())
	ex, err := remotecommand.NewSPDYExecutor(ts.restConfig(""), http.MethodPost, u)
	if err != nil {
		t.Fatal(err)
	}
	so := remotecommand.StreamOptions{Stdout: stdout}
	if stdin != nil {
		so.Stdin = stdin
	}
	return ex.StreamWithContext(ctx, so)
}

// syncWriter is a strings.Builder safe for a stream writing and a test reading.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// The end of the host's stdin reaches the site's command (kubectl cp to a pod runs tar -x,
// which finishes at the end of its stdin), over WebSockets and over SPDY.
func TestStdinEOF(t *testing.T) {
	for _, spdyOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "websocket", true: "spdy"}[spdyOnly], func(t *testing.T) {
			w := newWorld(t)
			k := &siteKubelet{spdyOnly: spdyOnly}
			k.install(t, w.site1)
			ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			in := strings.Repeat("x", 100000)
			var stdout syncWriter
			err := streamHost(ctx, t, ts, "/exec/demo/web-1/app", url.Values{"command": {"wc"}, "input": {"1"}, "output": {"1"}}, strings.NewReader(in), &stdout)
			if out := stdout.String(); err != nil || out != "100000 bytes" {
				t.Fatalf("stdout %q, %v; want the site to have read 100000 bytes and the end of stdin", out, err)
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if want := map[bool]string{false: "websocket", true: "spdy"}[spdyOnly]; strings.Join(k.protocols, ",") != want {
				t.Errorf("the site was asked with %v, want %s", k.protocols, want)
			}
		})
	}
}

// An attach or exec whose site stream stays open (kwok's attach follows a log forever)
// ends once the site pod's cached status shows the container terminated, with its exit
// code, or once the site pod is gone; it goes on while the container runs.
func TestStreamEndsWhenContainerExits(t *testing.T) {
	running := corev1.ContainerStatus{Name: "wait", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	terminated := func(code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "wait", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed"}}}
	}
	for _, tc := range []struct {
		name     string
		path     string
		query    url.Values
		want     string
		then     *corev1.ContainerStatus // nil: the site pod goes
		wantExit int
		wantErr  bool
	}{
		{name: "attach, exit code 0", path: "/attach/demo/web-1/wait", query: url.Values{"output": {"1"}, "input": {"1"}},
			want: "attached", then: new(terminated(0))},
		{name: "attach, exit code 3", path: "/attach/demo/web-1/wait", query: url.Values{"output": {"1"}},
			want: "attached", then: new(terminated(3)), wantExit: 3},
		{name: "exec, exit code 0", path: "/exec/demo/web-1/wait", query: url.Values{"command": {"wait"}, "output": {"1"}},
			want: "started", then: new(terminated(0))},
		{name: "attach, the site pod goes", path: "/attach/demo/web-1/wait", query: url.Values{"output": {"1"}},
			want: "attached", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			k := &siteKubelet{attachWaits: true}
			k.install(t, w.site1)
			ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})
			ts.exitPoll = 10 * time.Millisecond
			sp := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "acme-demo", Name: "web-1", UID: "site-uid"},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running}},
			}
			w.resolver.setSitePod("site1", "acme-demo", "web-1", sp)

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			// The host's stdin never ends, as kubectl's terminal.
			stdinR, stdinW := io.Pipe()
			defer func() { _ = stdinW.Close() }()
			var stdin io.Reader
			if tc.query.Get("input") == "1" {
				stdin = stdinR
			}
			var stdout syncWriter
			done := make(chan error, 1)
			go func() { done <- streamHost(ctx, t, ts, tc.path, tc.query, stdin, &stdout) }()
			// Still streaming while the container runs, well past a few polls.
			for stdout.String() != tc.want {
				select {
				case err := <-done:
					t.Fatalf("the stream ended while the container runs: %q, %v", stdout.String(), err)
				case <-ctx.Done():
					t.Fatalf("stdout %q, want %q", stdout.String(), tc.want)
				case <-time.After(10 * time.Millisecond):
				}
			}
			select {
			case err := <-done:
				t.Fatalf("the stream ended while the container runs: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			if tc.then == nil {
				w.resolver.setSitePod("site1", "acme-demo", "web-1", nil)
			} else {
				ended := sp.DeepCopy()
				ended.Status.Phase = corev1.PodSucceeded
				ended.Status.ContainerStatuses = []corev1.ContainerStatus{*tc.then}
				w.resolver.setSitePod("site1", "acme-demo", "web-1", ended)
			}
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				t.Fatal("the stream did not end after the container terminated")
			}
			var exit clientexec.CodeExitError
			switch {
			case tc.wantExit != 0:
				if !errors.As(err, &exit) || exit.Code != tc.wantExit {
					t.Errorf("error %v, want exit code %d", err, tc.wantExit)
				}
			case tc.wantErr:
				if err == nil || errors.As(err, &exit) {
					t.Errorf("error %v, want an error that is not an exit code", err)
				}
			case err != nil:
				t.Errorf("error %v, want none (exit code 0)", err)
			}
		})
	}
}

func TestTerminated(t *testing.T) {
	done := &corev1.ContainerStateTerminated{ExitCode: 1}
	pod := func(statuses ...corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: statuses}}
	}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		container string
		want      *corev1.ContainerStateTerminated
	}{
		{"running", pod(corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}), "app", nil},
		{"terminated", pod(corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Terminated: done}}), "app", done},
		{"another container terminated", pod(
			corev1.ContainerStatus{Name: "app"},
			corev1.ContainerStatus{Name: "side", State: corev1.ContainerState{Terminated: done}}), "app", nil},
		{"unnamed, the only container", pod(corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Terminated: done}}), "", done},
		{"an ephemeral container", &corev1.Pod{Status: corev1.PodStatus{
			ContainerStatuses:          []corev1.ContainerStatus{{Name: "app"}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debug", State: corev1.ContainerState{Terminated: done}}},
		}}, "debug", done},
		{"no status yet", pod(), "app", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := terminated(tc.pod, tc.container); got != tc.want {
				t.Errorf("terminated = %v, want %v", got, tc.want)
			}
		})
	}
}

// oneSize gives one terminal size, then ends.
type oneSize struct {
	once sync.Once
	size remotecommand.TerminalSize
}

func (q *oneSize) Next() *remotecommand.TerminalSize {
	var out *remotecommand.TerminalSize
	q.once.Do(func() { out = &q.size })
	return out
}

func TestPortForward(t *testing.T) {
	w := newWorld(t)
	k := &siteKubelet{}
	k.install(t, w.site1)
	ts := newTestServer(t, Config{Resolver: w.resolver, Auth: AuthConfig{Disabled: true}})

	u, _ := url.Parse(ts.ts.URL + "/portForward/demo/web-1")
	rt, upgrader, err := spdy.RoundTripperFor(ts.restConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	for i, tc := range []struct {
		port    int32
		send    string
		want    string
		wantErr string
	}{
		{port: 8080, send: "ping", want: "ping"},
		{port: 8081, send: strings.Repeat("x", 100000), want: strings.Repeat("x", 100000)},
		{port: 9999, send: "", wantErr: "connection refused"},
	} {
		t.Run(fmt.Sprint(tc.port), func(t *testing.T) {
			h := http.Header{}
			h.Set(corev1.StreamType, corev1.StreamTypeError)
			h.Set(corev1.PortHeader, fmt.Sprint(tc.port))
			h.Set(corev1.PortForwardRequestIDHeader, fmt.Sprint(i))
			errStream, err := conn.CreateStream(h)
			if err != nil {
				t.Fatal(err)
			}
			_ = errStream.Close()
			h.Set(corev1.StreamType, corev1.StreamTypeData)
			data, err := conn.CreateStream(h)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, _ = io.WriteString(data, tc.send)
				_ = data.Close()
			}()
			got, _ := io.ReadAll(data)
			msg, _ := io.ReadAll(errStream)
			if string(got) != tc.want {
				t.Errorf("read %d bytes, want %d", len(got), len(tc.want))
			}
			if tc.wantErr == "" && len(msg) > 0 || !strings.Contains(string(msg), tc.wantErr) {
				t.Errorf("error stream %q, want %q", msg, tc.wantErr)
			}
		})
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ns != "acme-demo" || k.pod != "web-1" || fmt.Sprint(k.fwdPorts) != "[8080 8081 9999]" {
		t.Errorf("site forwarded %s/%s ports %v", k.ns, k.pod, k.fwdPorts)
	}
}
