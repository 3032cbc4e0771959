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
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/promreg"

	"github.com/go-logr/logr"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Defaults of Config.
const (
	// DefaultStreamIdleTimeout is a kubelet's default streamingConnectionIdleTimeout.
	DefaultStreamIdleTimeout     = 4 * time.Hour
	DefaultStreamCreationTimeout = 30 * time.Second
	DefaultSiteTimeout           = 10 * time.Second
	DefaultShutdownTimeout       = 5 * time.Second
)

// Config configures a Server.
type Config struct {
	// Resolver finds host pods and virtual nodes on the sites. Required.
	Resolver Resolver
	// Address is where the shared endpoint listens, host:port (e.g. ":10250"); every
	// virtual node advertises its port unless NodePorts is set. Required.
	Address string
	// NodePorts, when set, gives every virtual node a port of its own from this range, on
	// Address's host, so that requests that do not name a node (/stats/summary,
	// /metrics/resource, /pods) are answered for the right one. See AddNode.
	NodePorts PortRange
	// Auth configures authentication and authorization. Required (Auth.Host, or
	// Auth.Disabled for tests).
	Auth AuthConfig
	// TLS chooses the serving certificate. Required.
	TLS TLSConfig
	// StreamIdleTimeout ends exec, attach and port-forward sessions idle that long.
	// Zero: 4h, as a kubelet.
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds the setup of a stream. Zero: 30s.
	StreamCreationTimeout time.Duration
	// SiteTimeout bounds each call to a site's API server that is not a stream (stats,
	// metrics). Zero: 10s.
	SiteTimeout time.Duration
	// ShutdownTimeout is how long Run waits for requests in flight when ctx ends; streams
	// are cancelled. Zero: 5s.
	ShutdownTimeout time.Duration
	// Logger receives structured logs. Zero: discarded.
	Logger logr.Logger
	// MetricsRegisterer receives the server's metrics. Nil: controller-runtime's
	// metrics.Registry, which the manager's metrics endpoint serves.
	MetricsRegisterer prometheus.Registerer
	// TracerProvider makes the spans of requests and site calls. Nil: OpenTelemetry's
	// global provider.
	TracerProvider trace.TracerProvider
}

// Server is the one authenticated HTTPS kubelet endpoint that serves every virtual node
// of the provider; see the package documentation.
type Server struct {
	cfg     Config
	host    string // of Address
	port    int32  // of Address; 0 means chosen by Run
	log     logr.Logger
	tracer  trace.Tracer
	auth    nodeutil.Auth // nil: disabled
	certs   certSource
	metrics *metrics
	router  http.Handler
	tlsCfg  *tls.Config
	srv     *http.Server
	// done is closed when Run returns; port-forwards, whose context virtual-kubelet never
	// cancels, end with it.
	done chan struct{}
	// exitPoll is how often a stream looks whether its container has terminated; 0 means
	// exitPollInterval (tests shorten it).
	exitPoll time.Duration

	mu      sync.Mutex
	started bool
	serving bool
	addr    net.Addr
	ports   *portPool
	nodeLns map[string]*nodeListener
}

type nodeListener struct {
	node string
	port int32
	ln   net.Listener
}

// New validates cfg, fills in its defaults and prepares the server (its certificate, its
// authenticator, its metrics); Run serves.
func New(cfg Config) (*Server, error) {
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.StreamCreationTimeout == 0 {
		cfg.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	if cfg.SiteTimeout == 0 {
		cfg.SiteTimeout = DefaultSiteTimeout
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.Logger.GetSink() == nil {
		cfg.Logger = logr.Discard()
	}
	var errs []error
	if cfg.Resolver == nil {
		errs = append(errs, errors.New("Resolver is required"))
	}
	host, portStr, err := net.SplitHostPort(cfg.Address)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil {
		errs = append(errs, fmt.Errorf("address %q: want host:port", cfg.Address))
	}
	if !cfg.NodePorts.IsZero() {
		if err := cfg.NodePorts.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("NodePorts: %w", err))
		} else if cfg.NodePorts.Contains(int32(port)) {
			errs = append(errs, fmt.Errorf("NodePorts %s holds the port of Address %s", cfg.NodePorts, cfg.Address))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"StreamIdleTimeout", cfg.StreamIdleTimeout}, {"StreamCreationTimeout", cfg.StreamCreationTimeout}, {"SiteTimeout", cfg.SiteTimeout}, {"ShutdownTimeout", cfg.ShutdownTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration", d.name, d.v))
		}
	}
	errs = append(errs, cfg.Auth.validate(), cfg.TLS.validate())
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kubelet API config: %w", err)
	}
	log := cfg.Logger.WithName("kubeletapi")
	s := &Server{
		cfg:     cfg,
		host:    host,
		port:    int32(port),
		log:     log,
		tracer:  cfg.TracerProvider.Tracer("github.com/vk8s-io/vk8s/kubeletapi"),
		done:    make(chan struct{}),
		ports:   newPortPool(cfg.NodePorts),
		nodeLns: map[string]*nodeListener{},
	}
	if s.auth, err = newAuth(cfg.Auth); err != nil {
		return nil, fmt.Errorf("kubelet API auth: %w", err)
	}
	if s.certs, err = newCertSource(cfg.TLS, log); err != nil {
		return nil, fmt.Errorf("kubelet API certificate: %w", err)
	}
	if s.metrics, err = newMetrics(cfg.MetricsRegisterer); err != nil {
		return nil, fmt.Errorf("kubelet API metrics: %w", err)
	}
	s.router = s.newRouter()
	s.tlsCfg = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Client certificates are verified by the authenticator (against Auth.ClientCA), as
		// a kubelet does, so that a token still works beside a certificate of another CA.
		ClientAuth: tls.RequestClientCert,
		// HTTP/1.1 only: exec, attach and port-forward upgrade the connection.
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certs.get() },
	}
	return s, nil
}

// newRouter routes kubelet paths to virtual-kubelet's handlers, as api.PodHandler does,
// except that port-forward gets its timeouts right (PodHandler swaps them in v1.13.0, which
// would end idle port-forwards after StreamCreationTimeout).
func (s *Server) newRouter() http.Handler {
	r := mux.NewRouter()
	execOpts := []api.ContainerExecHandlerOption{
		api.WithExecStreamIdleTimeout(s.cfg.StreamIdleTimeout),
		api.WithExecStreamCreationTimeout(s.cfg.StreamCreationTimeout),
	}
	r.HandleFunc("/pods", api.HandleRunningPods(s.nodePods)).Methods(http.MethodGet)
	running := api.HandleRunningPods(s.runningPods)
	r.HandleFunc("/runningpods", running).Methods(http.MethodGet)
	r.HandleFunc("/runningpods/", running).Methods(http.MethodGet)
	r.HandleFunc("/containerLogs/{namespace}/{pod}/{container}", api.HandleContainerLogs(s.containerLogs)).Methods(http.MethodGet)
	r.HandleFunc("/exec/{namespace}/{pod}/{container}", api.HandleContainerExec(s.exec, execOpts...)).Methods(http.MethodPost, http.MethodGet)
	r.HandleFunc("/attach/{namespace}/{pod}/{container}", api.HandleContainerAttach(s.attach, execOpts...)).Methods(http.MethodPost, http.MethodGet)
	r.HandleFunc("/portForward/{namespace}/{pod}", api.HandlePortForward(s.portForward,
		api.WithPortForwardStreamIdleTimeout(s.cfg.StreamIdleTimeout),
		api.WithPortForwardCreationTimeout(s.cfg.StreamCreationTimeout),
	)).Methods(http.MethodPost, http.MethodGet)
	stats := api.HandlePodStatsSummary(s.statsSummary)
	r.HandleFunc("/stats/summary", stats).Methods(http.MethodGet)
	r.HandleFunc("/stats/summary/", stats).Methods(http.MethodGet)
	res := api.HandlePodMetricsResource(s.metricsResource)
	r.HandleFunc(api.MetricsResourceRouteSuffix, res).Methods(http.MethodGet)
	r.HandleFunc(api.MetricsResourceRouteSuffix+"/", res).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(api.NotFound)
	return r
}

// NodeEndpoint is what a virtual node advertises so that its kubelet API requests reach
// this server for it.
type NodeEndpoint struct {
	// Port goes into status.daemonEndpoints.kubeletEndpoint.port.
	Port int32
	// Annotations go onto the Node: metrics.k8s.io/resource-metrics-path, so that
	// metrics-server (v0.7.0 and later) asks for the node's own resource metrics even on
	// the shared port.
	Annotations map[string]string
}

// NodePath is the path below which the shared endpoint serves the kubelet API of virtual
// node node alone: /nodes/<node> (e.g. /nodes/site1-node1/stats/summary).
func NodePath(node string) string { return "/nodes/" + node }

// AddNode returns what virtual node name advertises. With NodePorts set it gives the
// node a port of its own and starts listening on it: the port asked for (preferred, the
// port its Node object already advertises, so that restarts keep ports stable) when it is
// in the range and free, or else a free one; a port that cannot be listened on is skipped.
// Without NodePorts every node gets Address's port (known before Run unless it is 0).
// AddNode may be called before Run; it
// is safe for concurrent use and returns the same port for a node until RemoveNode.
func (s *Server) AddNode(name string, preferred int32) (NodeEndpoint, error) {
	ep := NodeEndpoint{Annotations: map[string]string{vk8sv1.AnnotationResourceMetricsPath: NodePath(name) + api.MetricsResourceRouteSuffix}}
	if s.cfg.NodePorts.IsZero() {
		s.mu.Lock()
		ep.Port = s.port
		s.mu.Unlock()
		return ep, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	port, err := s.ports.assign(name, preferred, func(p int32) error {
		ln, err := net.Listen("tcp", net.JoinHostPort(s.host, strconv.Itoa(int(p))))
		if err != nil {
			return err
		}
		nl := &nodeListener{node: name, port: p, ln: ln}
		s.nodeLns[name] = nl
		if s.serving {
			s.serve(nl.ln, name)
		}
		return nil
	})
	if err != nil {
		return NodeEndpoint{}, err
	}
	ep.Port = port
	return ep, nil
}

// RemoveNode stops listening on virtual node name's port and frees it. Connections open
// on it run to their end.
func (s *Server) RemoveNode(name string) {
	s.mu.Lock()
	nl := s.nodeLns[name]
	delete(s.nodeLns, name)
	s.ports.release(name)
	s.mu.Unlock()
	if nl != nil {
		_ = nl.ln.Close()
	}
}

// Addr is the shared endpoint's address once Run listens, else nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens on Address (and the ports of the virtual nodes added), serves until ctx
// ends, then shuts down: requests in flight get ShutdownTimeout, streams are cancelled.
// With TLS.CSR it keeps the serving certificate current meanwhile. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("kubelet API: Run called twice")
	}
	s.started = true
	s.mu.Unlock()
	defer close(s.done)

	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("kubelet API: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	certDone := make(chan struct{})
	go func() {
		defer close(certDone)
		s.certs.run(ctx)
	}()
	defer func() {
		cancel()
		<-certDone
	}()

	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		// Longer than metrics-server's and Prometheus's scrape intervals, so that one
		// connection per node is kept open between scrapes.
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: func(c context.Context, conn net.Conn) context.Context {
			if tc, ok := conn.(*tls.Conn); ok {
				if sc, ok := tc.NetConn().(scopedConn); ok {
					return context.WithValue(c, listenerNodeKey{}, sc.node)
				}
			}
			return c
		},
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	if s.port == 0 {
		s.port = int32(ln.Addr().(*net.TCPAddr).Port)
	}
	s.serving = true
	s.serve(ln, "")
	for _, nl := range s.nodeLns {
		s.serve(nl.ln, nl.node)
	}
	s.mu.Unlock()
	s.log.Info("kubelet API serving", "address", ln.Addr().String(), "nodePorts", s.cfg.NodePorts.String())

	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer scancel()
	err = s.srv.Shutdown(sctx)
	s.mu.Lock()
	s.serving = false
	s.mu.Unlock()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("kubelet API shutdown: %w", err)
	}
	return nil
}

// serve serves ln (TLS) in a goroutine; requests on it are for node, or name their node
// when node is empty. s.mu is held.
func (s *Server) serve(ln net.Listener, node string) {
	if node != "" {
		ln = scopedListener{Listener: ln, node: node}
	}
	tl := tls.NewListener(ln, s.tlsCfg)
	go func() {
		if err := s.srv.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error(err, "kubelet API listener stopped", "address", ln.Addr().String(), "node", node)
		}
	}()
}

// scopedListener marks the connections of a virtual node's own port.
type scopedListener struct {
	net.Listener
	node string
}

func (l scopedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return scopedConn{Conn: c, node: l.node}, nil
}

type scopedConn struct {
	net.Conn
	node string
}

// Context keys.
type (
	// listenerNodeKey: the virtual node of the port the connection came in on.
	listenerNodeKey struct{}
	// requestNodeKey: the virtual node the request is for.
	requestNodeKey struct{}
	// streamFlagsKey: the streams an exec or attach asked for.
	streamFlagsKey struct{}
)

// requestNode is the virtual node a node-level request (stats, metrics, pods) is for.
func (s *Server) requestNode(ctx context.Context) (string, *NodeTarget, error) {
	node, _ := ctx.Value(requestNodeKey{}).(string)
	if node == "" {
		return "", nil, errdefs.NotFound("no virtual node named by the request")
	}
	nt, err := s.cfg.Resolver.Node(ctx, node)
	if err != nil {
		return "", nil, err
	}
	return node, nt, nil
}

// route is what the server makes of a kubelet path.
type route struct {
	// handler names the handler in metrics and spans.
	handler string
	// namespace and pod are set for the handlers of one pod.
	namespace, pod string
	// nodeLevel is set for the handlers of a whole node (stats, metrics, pods,
	// runningpods).
	nodeLevel bool
	// streaming is set for exec, attach and port-forward.
	streaming bool
}

func routeOf(path string) route {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[0] == "containerLogs":
		return route{handler: "containerLogs", namespace: parts[1], pod: parts[2]}
	case len(parts) == 4 && (parts[0] == "exec" || parts[0] == "attach"):
		return route{handler: parts[0], namespace: parts[1], pod: parts[2], streaming: true}
	case len(parts) == 3 && parts[0] == "portForward":
		return route{handler: "portForward", namespace: parts[1], pod: parts[2], streaming: true}
	case len(parts) == 2 && parts[0] == "stats" && parts[1] == "summary":
		return route{handler: "stats", nodeLevel: true}
	case len(parts) == 2 && parts[0] == "metrics" && parts[1] == "resource":
		return route{handler: "metrics", nodeLevel: true}
	case len(parts) == 1 && (parts[0] == "pods" || parts[0] == "runningpods"):
		return route{handler: "pods", nodeLevel: true}
	}
	return route{handler: "other"}
}

// splitNodePath splits /nodes/<node>/<rest> into node and /<rest>.
func splitNodePath(p string) (node, rest string, ok bool) {
	after, found := strings.CutPrefix(p, "/nodes/")
	if !found {
		return "", "", false
	}
	node, rest, _ = strings.Cut(after, "/")
	if node == "" {
		return "", "", false
	}
	return node, "/" + rest, true
}

// ServeHTTP authenticates and authorizes a kubelet API request, works out the virtual
// node it is for, and hands it to virtual-kubelet's handlers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	scope, _ := r.Context().Value(listenerNodeKey{}).(string)
	kpath := r.URL.Path
	named := false
	node, rest, ok := splitNodePath(kpath)
	if ok {
		named = true
		kpath = rest
	}
	rt := routeOf(kpath)
	ctx, span := s.tracer.Start(r.Context(), "kubeletapi."+rt.handler, trace.WithSpanKind(trace.SpanKindServer))
	var userName string
	defer func() {
		code := rec.code()
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(rt.handler, strconv.Itoa(code)).Inc()
		s.metrics.duration.WithLabelValues(rt.handler).Observe(d.Seconds())
		span.SetAttributes(attribute.Int("http.status_code", code), attribute.String("node", scope))
		kv := []any{"handler", rt.handler, "code", code, "node", scope, "user", userName, "path", r.URL.Path, "duration", d}
		if code >= 500 {
			span.SetStatus(codes.Error, string(rec.errBody))
			s.log.Error(errors.New(strings.TrimSpace(string(rec.errBody))), "kubelet API request failed", kv...)
		} else {
			s.log.V(1).Info("kubelet API request", kv...)
		}
		span.End()
	}()
	if named {
		if scope != "" && node != scope {
			http.Error(rec, fmt.Sprintf("this port serves virtual node %s, not %s", scope, node), http.StatusNotFound)
			return
		}
		scope = node
	}

	var u user.Info
	if s.auth != nil {
		resp, ok, err := s.auth.AuthenticateRequest(r.WithContext(ctx))
		if err != nil || !ok {
			http.Error(rec, "Unauthorized", http.StatusUnauthorized)
			return
		}
		u = resp.User
		userName = u.GetName()
	}

	// A pod's requests are authorized on the virtual node it is bound to, as its kubelet
	// would authorize them.
	authzNode := scope
	var target *PodTarget
	var podErr error
	if rt.pod != "" {
		target, podErr = s.cfg.Resolver.Pod(ctx, rt.namespace, rt.pod)
		if podErr == nil {
			authzNode = target.Node
		}
	}
	if s.auth != nil {
		attrs := requestAttributes(u, r, authzNode, kpath, rt.streaming)
		decision, _, err := s.auth.Authorize(ctx, attrs)
		if err != nil {
			http.Error(rec, fmt.Sprintf("authorization: %v", err), http.StatusInternalServerError)
			return
		}
		if decision != authorizer.DecisionAllow {
			http.Error(rec, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s, name=%s)",
				u.GetName(), attrs.GetVerb(), attrs.GetSubresource(), authzNode), http.StatusForbidden)
			return
		}
	}

	switch {
	case rt.pod != "" && errdefs.IsNotFound(podErr):
		http.Error(rec, fmt.Sprintf("pod %s/%s not found: %v", rt.namespace, rt.pod, podErr), http.StatusNotFound)
		return
	case rt.pod != "" && podErr != nil:
		http.Error(rec, podErr.Error(), http.StatusInternalServerError)
		return
	case rt.pod != "" && scope != "" && target.Node != scope:
		http.Error(rec, fmt.Sprintf("pod %s/%s is not on virtual node %s", rt.namespace, rt.pod, scope), http.StatusNotFound)
		return
	case rt.nodeLevel && scope == "":
		http.Error(rec, fmt.Sprintf("this kubelet API serves many virtual nodes and the request does not say which: "+
			"ask for %s%s, or use the port the node advertises", NodePath("<node>"), kpath), http.StatusNotFound)
		return
	}
	if rt.pod != "" {
		scope = target.Node
		span.SetAttributes(attribute.String("namespace", rt.namespace), attribute.String("pod", rt.pod), attribute.String("site", target.Site.Site))
	}

	ctx = context.WithValue(ctx, requestNodeKey{}, scope)
	if rt.streaming {
		ctx = context.WithValue(ctx, streamFlagsKey{}, streamFlagsOf(r.URL.Query()))
	}
	r2 := r.WithContext(ctx)
	if named {
		u := *r.URL
		u.Path, u.RawPath = kpath, ""
		r2.URL = &u
	}
	s.router.ServeHTTP(rec, r2)
}

// recorder records the status code, keeps the start of an error's body for the log, and
// passes on flushing (log follow) and hijacking (exec, attach, port-forward).
type recorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
	errBody  []byte
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.status >= 500 && len(r.errBody) < 512 {
		r.errBody = append(r.errBody, b[:min(len(b), 512-len(r.errBody))]...)
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	r.hijacked = true
	return h.Hijack()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	switch {
	case r.status != 0:
		return r.status
	case r.hijacked:
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK
}

// metrics are the server's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vk8s_kubeletapi_requests_total",
			Help: "Requests to the kubelet API of the virtual nodes, by handler (containerLogs, exec, attach, portForward, stats, metrics, pods, other) and HTTP status code (101: a stream).",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vk8s_kubeletapi_request_duration_seconds",
			Help:    "Duration of requests to the kubelet API of the virtual nodes, by handler; a stream (exec, attach, port-forward, log follow) counts until it ends.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}, []string{"handler"}),
	}
	var err error
	if m.requests, err = promreg.Register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}
