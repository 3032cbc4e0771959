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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"sync"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"go.opentelemetry.io/otel/attribute"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/httpstream"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
	"k8s.io/utils/ptr"

	"github.com/vk8s-io/vk8s/sitereg"
)

// This file holds the handlers virtual-kubelet's node/api calls: each finds the site pod
// or the site nodes through the Resolver and calls the site's API server (never a site
// kubelet directly).

// logOptions maps virtual-kubelet's log options to the site's. Zero means unset in
// virtual-kubelet's options, so tailLines=0 cannot be told from no tailLines.
func logOptions(container string, o api.ContainerLogOpts) *corev1.PodLogOptions {
	out := &corev1.PodLogOptions{
		Container:  container,
		Follow:     o.Follow,
		Previous:   o.Previous,
		Timestamps: o.Timestamps,
	}
	if o.Tail > 0 {
		out.TailLines = ptr.To(int64(o.Tail))
	}
	if o.LimitBytes > 0 {
		out.LimitBytes = ptr.To(int64(o.LimitBytes))
	}
	if o.SinceSeconds > 0 {
		out.SinceSeconds = ptr.To(int64(o.SinceSeconds))
	}
	if !o.SinceTime.IsZero() {
		out.SinceTime = &metav1.Time{Time: o.SinceTime}
	}
	return out
}

// classify turns a site API error into virtual-kubelet's classes (outermost), so that the
// client gets 404 and 400 as a kubelet would answer.
func classify(err error, format string, args ...any) error {
	wrapped := fmt.Errorf(format+": %w", append(args, err)...)
	switch {
	case apierrors.IsNotFound(err):
		return errdefs.AsNotFound(wrapped)
	case apierrors.IsBadRequest(err), apierrors.IsInvalid(err):
		return errdefs.AsInvalidInput(wrapped)
	}
	return wrapped
}

func (s *Server) containerLogs(ctx context.Context, namespace, pod, container string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	t, err := s.cfg.Resolver.Pod(ctx, namespace, pod)
	if err != nil {
		return nil, err
	}
	stream, err := t.Site.Client.CoreV1().Pods(t.Namespace).GetLogs(t.Name, logOptions(container, opts)).Stream(ctx)
	if err != nil {
		return nil, classify(err, "logs of pod %s/%s on site %s", t.Namespace, t.Name, t.Site.Site)
	}
	return stream, nil
}

// siteURL is the URL of a subresource of a pod on the site cfg reaches.
func siteURL(cfg *rest.Config, namespace, name, subresource string, opts runtime.Object) (*url.URL, error) {
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path = path.Join(u.Path, "/api/v1/namespaces", namespace, "pods", name, subresource)
	if opts != nil {
		q, err := clientgoscheme.ParameterCodec.EncodeParameters(opts, corev1.SchemeGroupVersion)
		if err != nil {
			return nil, err
		}
		u.RawQuery = q.Encode()
	}
	return &u, nil
}

// streamFlags are the streams a client asked for (query input, output, error, tty), put in
// the request's context by the server: the streams virtual-kubelet hands over do not
// always say it (a WebSocket gives every channel).
type streamFlags struct{ stdin, stdout, stderr, tty bool }

func streamFlagsOf(q url.Values) streamFlags {
	return streamFlags{stdin: q.Get("input") == "1", stdout: q.Get("output") == "1", stderr: q.Get("error") == "1", tty: q.Get("tty") == "1"}
}

func (s *Server) exec(ctx context.Context, namespace, pod, container string, cmd []string, attach api.AttachIO) error {
	return s.stream(ctx, "exec", namespace, pod, container, cmd, attach)
}

func (s *Server) attach(ctx context.Context, namespace, pod, container string, attach api.AttachIO) error {
	return s.stream(ctx, "attach", namespace, pod, container, nil, attach)
}

// stream runs exec or attach on the site pod and copies the streams both ways. A
// non-zero exit code is returned unwrapped: virtual-kubelet passes it on only as a
// utilexec.ExitError.
//
// The stream also ends when the site's container has terminated (awaitExit), with its
// exit code: a kubelet closes the stream itself when the container exits, but a site
// whose kubelet keeps it open (kwok's attach follows a log file forever) would otherwise
// keep kubectl attach and kubectl run -it waiting.
func (s *Server) stream(ctx context.Context, sub, namespace, pod, container string, cmd []string, attach api.AttachIO) error {
	t, err := s.cfg.Resolver.Pod(ctx, namespace, pod)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go s.awaitExit(ctx, cancel, t, container)
	flags, ok := ctx.Value(streamFlagsKey{}).(streamFlags)
	if !ok {
		flags = streamFlags{stdin: attach.Stdin() != nil, stdout: attach.Stdout() != nil, stderr: attach.Stderr() != nil, tty: attach.TTY()}
	}
	var opts runtime.Object
	if sub == "exec" {
		opts = &corev1.PodExecOptions{Container: container, Command: cmd, Stdin: flags.stdin, Stdout: flags.stdout, Stderr: flags.stderr, TTY: flags.tty}
	} else {
		opts = &corev1.PodAttachOptions{Container: container, Stdin: flags.stdin, Stdout: flags.stdout, Stderr: flags.stderr, TTY: flags.tty}
	}
	u, err := siteURL(t.Site.Config, t.Namespace, t.Name, sub, opts)
	if err != nil {
		return err
	}
	ex, err := s.executor(t.Site.Config, u)
	if err != nil {
		return fmt.Errorf("%s in pod %s/%s on site %s: %w", sub, t.Namespace, t.Name, t.Site.Site, err)
	}
	so := remotecommand.StreamOptions{Tty: flags.tty}
	if flags.stdin && attach.Stdin() != nil {
		so.Stdin = attach.Stdin()
	}
	if flags.stdout && attach.Stdout() != nil {
		so.Stdout = attach.Stdout()
	}
	if flags.stderr && attach.Stderr() != nil {
		so.Stderr = attach.Stderr()
	}
	if flags.tty && attach.Resize() != nil {
		so.TerminalSizeQueue = sizeQueue{done: ctx.Done(), ch: attach.Resize()}
	}
	err = ex.StreamWithContext(ctx, so)
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		return exit
	}
	var exited *containerExited
	if errors.As(context.Cause(ctx), &exited) {
		return exited.result()
	}
	if err != nil {
		return fmt.Errorf("%s in pod %s/%s on site %s: %w", sub, t.Namespace, t.Name, t.Site.Site, err)
	}
	return nil
}

// exitPollInterval is how often a stream reads its site pod from the Resolver's cache.
const exitPollInterval = time.Second

// containerExited is the cause of a stream's end when the site's container terminated.
type containerExited struct {
	container string
	state     *corev1.ContainerStateTerminated // nil: the site pod is gone
}

func (e *containerExited) Error() string {
	if e.state == nil {
		return fmt.Sprintf("container %s: the site pod is gone", e.container)
	}
	return fmt.Sprintf("container %s terminated (%s) with exit code %d", e.container, e.state.Reason, e.state.ExitCode)
}

// result is what the stream returns: nil for exit code 0, else the exit code as
// virtual-kubelet passes it on (kubectl reports it and exits with it).
func (e *containerExited) result() error {
	switch {
	case e.state == nil:
		return e
	case e.state.ExitCode == 0:
		return nil
	}
	return utilexec.CodeExitError{Err: e, Code: int(e.state.ExitCode)}
}

// awaitExit cancels a stream with a *containerExited cause once the Resolver's cache of
// the site's pods shows container of t terminated, or the site pod gone (or replaced by
// another of the same name). It returns when ctx ends, or at once when the cache does not
// hold the site pod to begin with (nothing to tell an end by).
func (s *Server) awaitExit(ctx context.Context, cancel context.CancelCauseFunc, t *PodTarget, container string) {
	interval := s.exitPoll
	if interval == 0 {
		interval = exitPollInterval
	}
	sp, ok := s.cfg.Resolver.SitePod(t.Site.Site, t.Namespace, t.Name)
	if !ok {
		return
	}
	uid := sp.UID
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sp, ok := s.cfg.Resolver.SitePod(t.Site.Site, t.Namespace, t.Name)
		if !ok || sp.UID != uid {
			cancel(&containerExited{container: container})
			return
		}
		if st := terminated(sp, container); st != nil {
			cancel(&containerExited{container: container, state: st})
			return
		}
	}
}

// terminated returns the terminated state of container (or, unnamed, of the pod's only
// container) in pod's status, or nil while it has not terminated.
func terminated(pod *corev1.Pod, container string) *corev1.ContainerStateTerminated {
	if container == "" && len(pod.Status.ContainerStatuses) == 1 {
		container = pod.Status.ContainerStatuses[0].Name
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == container {
				return list[i].State.Terminated
			}
		}
	}
	return nil
}

// executor prefers WebSockets (remotecommand v5) and falls back to SPDY for API servers
// that do not upgrade to it, as kubectl does.
func (s *Server) executor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	spdyExec, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
	if err != nil {
		return nil, err
	}
	wsExec, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, u.String())
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(wsExec, spdyExec, shouldFallback)
}

func shouldFallback(err error) bool {
	return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
}

// sizeQueue passes virtual-kubelet's terminal sizes to remotecommand until done.
type sizeQueue struct {
	done <-chan struct{}
	ch   <-chan api.TermSize
}

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case sz, ok := <-q.ch:
		if !ok {
			return nil
		}
		return &remotecommand.TerminalSize{Width: sz.Width, Height: sz.Height}
	case <-q.done:
		return nil
	}
}

// portForward forwards one connection (stream) to port of the site pod, over a
// port-forward connection to the site's API server (WebSockets tunnelling SPDY, or SPDY).
// virtual-kubelet calls it once per forwarded connection, with a context that is never
// cancelled: it ends when either side closes, or when the server stops.
func (s *Server) portForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := ctx.Done()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-stop:
		}
	}()
	ctx, span := s.tracer.Start(ctx, "kubeletapi.portForward")
	span.SetAttributes(attribute.String("namespace", namespace), attribute.String("pod", pod), attribute.Int("port", int(port)))
	defer span.End()
	t, err := s.cfg.Resolver.Pod(ctx, namespace, pod)
	if err != nil {
		return err
	}
	u, err := siteURL(t.Site.Config, t.Namespace, t.Name, "portforward", nil)
	if err != nil {
		return err
	}
	dialer, err := portForwardDialer(t.Site.Config, u)
	if err != nil {
		return err
	}
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s/%s on site %s: %w", t.Namespace, t.Name, t.Site.Site, err)
	}
	defer func() { _ = conn.Close() }()
	return bridgePort(ctx, conn, port, stream)
}

func portForwardDialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	wsDialer, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialer(wsDialer, spdyDialer, shouldFallback), nil
}

// bridgePort opens the error and data streams for port on conn, as client-go's port
// forwarder does for a local connection, and copies between the data stream and local.
func bridgePort(ctx context.Context, conn httpstream.Connection, port int32, local io.ReadWriteCloser) error {
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	h.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		return fmt.Errorf("port %d: create error stream: %w", port, err)
	}
	_ = errStream.Close() // nothing is written to it
	remoteErr := make(chan error, 1)
	go func() {
		msg, err := io.ReadAll(errStream)
		switch {
		case err != nil:
			remoteErr <- fmt.Errorf("port %d: read error stream: %w", port, err)
		case len(msg) > 0:
			remoteErr <- fmt.Errorf("port %d: %s", port, msg)
		default:
			remoteErr <- nil
		}
	}()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		return fmt.Errorf("port %d: create data stream: %w", port, err)
	}
	remoteDone := make(chan struct{})
	localDone := make(chan struct{})
	go func() {
		defer close(remoteDone)
		_, _ = io.Copy(local, data)
	}()
	go func() {
		defer close(localDone)
		// Tell the site nothing more comes once the local side has finished.
		defer func() { _ = data.Close() }()
		_, _ = io.Copy(data, local)
	}()
	select {
	case <-remoteDone:
	case <-ctx.Done():
	}
	// Discard what was not sent, so that the error stream is not held up behind it.
	_ = data.Reset()
	select {
	case err := <-remoteErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// siteNodeGet reads path of a site node's kubelet through the site API server's node
// proxy.
func (s *Server) siteNodeGet(ctx context.Context, site *sitereg.Conn, node, p, accept string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SiteTimeout)
	defer cancel()
	ctx, span := s.tracer.Start(ctx, "kubeletapi.siteNodeGet")
	span.SetAttributes(attribute.String("site", site.Site), attribute.String("siteNode", node), attribute.String("path", p))
	defer span.End()
	req := site.Client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", p)
	if accept != "" {
		req = req.SetHeader("Accept", accept)
	}
	raw, err := req.DoRaw(ctx)
	if err != nil {
		span.RecordError(err)
		return nil, classify(err, "GET %s of node %s on site %s", p, node, site.Site)
	}
	return raw, nil
}

// siteSummary reads a site node's stats summary from its kubelet.
func (s *Server) siteSummary(ctx context.Context, site *sitereg.Conn, node string) (*statsv1alpha1.Summary, error) {
	raw, err := s.siteNodeGet(ctx, site, node, "/stats/summary", "application/json")
	if err != nil {
		return nil, err
	}
	out := &statsv1alpha1.Summary{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("stats summary of node %s on site %s: %w", node, site.Site, err)
	}
	return out, nil
}

// metricsSummary makes a site node's stats summary from its resource metrics.
func (s *Server) metricsSummary(ctx context.Context, site *sitereg.Conn, node string) (*statsv1alpha1.Summary, error) {
	scraped := time.Now()
	fams, err := s.siteResourceMetrics(ctx, site, node)
	if err != nil {
		return nil, err
	}
	return SummaryFromMetrics(node, fams, scraped), nil
}

// podsSummary makes a site node's stats summary from the pods the site runs on it.
func (s *Server) podsSummary(ctx context.Context, site *sitereg.Conn, node string) (*statsv1alpha1.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SiteTimeout)
	defer cancel()
	ctx, span := s.tracer.Start(ctx, "kubeletapi.sitePods")
	span.SetAttributes(attribute.String("site", site.Site), attribute.String("siteNode", node))
	defer span.End()
	// ResourceVersion 0: from the API server's watch cache, as a kubelet lists its pods.
	list, err := site.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(), ResourceVersion: "0",
	})
	if err != nil {
		span.RecordError(err)
		return nil, classify(err, "pods of node %s on site %s", node, site.Site)
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return SummaryFromPods(node, pods), nil
}

// summarySource is one way of learning a site node's stats summary.
type summarySource struct {
	name string
	get  func(ctx context.Context, site *sitereg.Conn, node string) (*statsv1alpha1.Summary, error)
}

// siteNodeSummary returns the stats summary of a site node from the first of sources that
// gives one. A source the site answers with an error (a node that serves no summary, as
// kwok's do, or that its API server will not proxy to) passes on to the next; a site whose
// API server does not answer at all fails at once, since the others ask it too.
func (s *Server) siteNodeSummary(ctx context.Context, site *sitereg.Conn, node string, sources ...summarySource) (*statsv1alpha1.Summary, error) {
	var errs []error
	for i, src := range sources {
		sum, err := src.get(ctx, site, node)
		if err == nil {
			if i > 0 {
				s.log.V(1).Info("stats summary of a site node made from another source", "site", site.Site, "siteNode", node,
					"source", src.name, "unavailable", errors.Join(errs...).Error())
			}
			return sum, nil
		}
		errs = append(errs, err)
		if !siteAnswered(err) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// siteAnswered says whether err is, or wraps, a status the site's API server answered
// with (it refused, or its node did), as opposed to no answer (unreachable, timed out).
// It follows Unwrap and errdefs' Cause.
func siteAnswered(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return true
	}
	// errdefs' wrappers have Cause, not Unwrap.
	var causer interface{ Cause() error }
	if errors.As(err, &causer) {
		return siteAnswered(causer.Cause())
	}
	return false
}

// resourceMetricsAccept asks for the Prometheus text format, and takes any other type
// after it: kwok's Metric declares no content type, and its content negotiation refuses a
// request that accepts only text/plain (406). What comes back is parsed as text either way.
const resourceMetricsAccept = "text/plain;version=0.0.4;q=1, */*;q=0.1"

// siteResourceMetrics reads a site node's resource metrics, from the path its
// metrics.k8s.io/resource-metrics-path annotation names (kwok's nodes) or the kubelet's.
func (s *Server) siteResourceMetrics(ctx context.Context, site *sitereg.Conn, node string) (map[string]*dto.MetricFamily, error) {
	p := "/metrics/resource"
	if site.Nodes != nil {
		if n, err := site.Nodes.Get(node); err == nil && n.Annotations[vk8sv1.AnnotationResourceMetricsPath] != "" {
			p = n.Annotations[vk8sv1.AnnotationResourceMetricsPath]
		}
	}
	raw, err := s.siteNodeGet(ctx, site, node, p, resourceMetricsAccept)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("resource metrics of node %s on site %s: %w", node, site.Site, err)
	}
	return fams, nil
}

// maxSiteCalls bounds the calls made at once for one request (Aggregate mode).
const maxSiteCalls = 8

// eachSiteNode calls fn for every site node, at most maxSiteCalls at once, and returns
// when all have returned.
func eachSiteNode(nodes []string, fn func(i int, node string)) {
	sem := make(chan struct{}, maxSiteCalls)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i, n)
		}()
	}
	wg.Wait()
}

// statsSummary is the kubelet's /stats/summary for the virtual node the request is for:
// from each site node's own summary, or, where it serves none, made from its resource
// metrics, or else from the pods the site runs on it (with no usage).
func (s *Server) statsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	node, nt, err := s.requestNode(ctx)
	if err != nil {
		return nil, err
	}
	sums := make([]*statsv1alpha1.Summary, len(nt.SiteNodes))
	errs := make([]error, len(nt.SiteNodes))
	eachSiteNode(nt.SiteNodes, func(i int, n string) {
		sums[i], errs[i] = s.siteNodeSummary(ctx, nt.Site, n,
			summarySource{"kubelet", s.siteSummary}, summarySource{"resource metrics", s.metricsSummary}, summarySource{"pods", s.podsSummary})
	})
	if err := errors.Join(errs...); err != nil {
		// A merged summary that lacks a node would be wrong, not partial.
		return nil, fmt.Errorf("stats summary of virtual node %s: %w", node, err)
	}
	return HostSummary(node, nt.Site.Site, sums, s.cfg.Resolver.HostPod), nil
}

// metricsResource is the kubelet's /metrics/resource for the virtual node the request is
// for: from each site node's own resource metrics, or, where it has none, from its stats
// summary (the kubelet's, or else one made from the site's pods, which gives no usage
// series). A site node that cannot be read sets scrape_error, as in a kubelet.
func (s *Server) metricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	node, nt, err := s.requestNode(ctx)
	if err != nil {
		return nil, err
	}
	fams := make([]map[string]*dto.MetricFamily, len(nt.SiteNodes))
	errs := make([]error, len(nt.SiteNodes))
	eachSiteNode(nt.SiteNodes, func(i int, n string) {
		f, err := s.siteResourceMetrics(ctx, nt.Site, n)
		if err == nil {
			fams[i] = f
			return
		}
		if !siteAnswered(err) {
			errs[i] = err
			return
		}
		sum, err2 := s.siteNodeSummary(ctx, nt.Site, n, summarySource{"kubelet", s.siteSummary}, summarySource{"pods", s.podsSummary})
		if err2 != nil {
			errs[i] = errors.Join(err, err2)
			return
		}
		fams[i] = map[string]*dto.MetricFamily{}
		for _, f := range ResourceMetrics(sum) {
			fams[i][f.GetName()] = f
		}
	})
	var ok []map[string]*dto.MetricFamily
	for _, f := range fams {
		if f != nil {
			ok = append(ok, f)
		}
	}
	failed := errors.Join(errs...)
	if len(ok) == 0 && failed != nil {
		return nil, fmt.Errorf("resource metrics of virtual node %s: %w", node, failed)
	}
	if failed != nil {
		s.log.Error(failed, "resource metrics incomplete", "node", node)
	}
	return HostResourceMetrics(nt.Site.Site, ok, s.cfg.Resolver.HostPod, failed != nil), nil
}

// runningPods is the kubelet's /runningpods/: the host pods bound to the virtual node that
// run on its site, that is, that have a pod there and have not terminated. A pod still
// waiting to be created on the site (a missing mandatory reference, a site that refuses
// it) is in /pods but not here, and a pod leaves it once its site pod is gone.
func (s *Server) runningPods(ctx context.Context) ([]*corev1.Pod, error) {
	node, _, err := s.requestNode(ctx)
	if err != nil {
		return nil, err
	}
	pods, err := s.cfg.Resolver.NodePods(ctx, node)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if t, err := s.cfg.Resolver.Pod(ctx, p.Namespace, p.Name); err == nil && t.Node == node {
			out = append(out, p)
		}
	}
	return out, nil
}

// nodePods is the kubelet's /pods: the host pods bound to the virtual node.
func (s *Server) nodePods(ctx context.Context) ([]*corev1.Pod, error) {
	node, _, err := s.requestNode(ctx)
	if err != nil {
		return nil, err
	}
	return s.cfg.Resolver.NodePods(ctx, node)
}
