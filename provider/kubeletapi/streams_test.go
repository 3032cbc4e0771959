package kubeletapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	clientexec "k8s.io/client-go/util/exec"
	utilexec "k8s.io/utils/exec"
)

// siteKubelet makes a fake site serve exec, attach and port-forward with virtual-kubelet's
// own handlers (which speak the kubelet's streaming protocols), so that the whole path
// client -> Server -> site API server is exercised. It records what the site was asked.
type siteKubelet struct {
	mu       sync.Mutex
	cmd      []string
	ns, pod  string
	tty      bool
	resized  []api.TermSize
	fwdPorts []int32
}

func (k *siteKubelet) install(fs *fakeSite) {
	r := mux.NewRouter()
	r.HandleFunc("/api/v1/namespaces/{namespace}/pods/{pod}/exec", api.HandleContainerExec(
		func(_ context.Context, ns, pod, _ string, cmd []string, a api.AttachIO) error {
			k.mu.Lock()
			k.cmd, k.ns, k.pod, k.tty = cmd, ns, pod, a.TTY()
			k.mu.Unlock()
			switch cmd[0] {
			case "fail":
				return utilexec.CodeExitError{Err: errors.New("exit status 3"), Code: 3}
			case "cat":
				_, err := io.Copy(a.Stdout(), a.Stdin())
				return err
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
		func(_ context.Context, ns, pod, _ string, a api.AttachIO) error {
			k.mu.Lock()
			k.ns, k.pod = ns, pod
			k.mu.Unlock()
			_, err := io.WriteString(a.Stdout(), "attached")
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
	fs.mux.Handle("/api/v1/namespaces/", kubeletParams(r))
}

// kubeletParams rewrites the query of pods/exec and pods/attach as the API server does
// when it calls the kubelet: stdin=true becomes input=1, and so on.
func kubeletParams(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for api, kubelet := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"} {
			if v := q.Get(api); v != "" {
				q.Del(api)
				if v == "true" {
					q.Set(kubelet, "1")
				}
			}
		}
		r.URL.RawQuery = q.Encode()
		next.ServeHTTP(w, r)
	})
}

func TestExecAttach(t *testing.T) {
	w := newWorld(t)
	k := &siteKubelet{}
	k.install(w.site1)
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
	k.install(w.site1)
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
