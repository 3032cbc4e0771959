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

package shard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/vk8s-io/vk8s/promreg"
)

// LabelRole marks the Leases of the sharding: RoleMember for a replica's, RoleShard for a
// shard's.
const (
	LabelRole  = "vk8s.io/provider-shard"
	RoleMember = "member"
	RoleShard  = "shard"
)

// Prefixes of the Lease names: a replica's is MemberPrefix+identity, shard i's
// ShardPrefix+i.
const (
	MemberPrefix = "vk8s-provider-member-"
	ShardPrefix  = "vk8s-provider-shard-"
)

// Defaults: a replica that dies is noticed LeaseDuration after its last renewal at most a
// RetryPeriod late, and its shards are taken at the next RetryPeriod: within 12 s, well
// inside the 40 s for which the host keeps a virtual node Ready without a Lease renewal.
// A replica stops acting when its renewals have failed for RenewDeadline: 7 s leaves room
// for an API server that answers slowly without letting the others take over too soon.
const (
	DefaultShards        = 64
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewDeadline = 7 * time.Second
	DefaultRetryPeriod   = time.Second
)

// forgetAfter is how many lease durations a member Lease nobody renews stays before a live
// replica deletes it.
const forgetAfter = 10

// Config configures one replica's part in the sharding.
type Config struct {
	// Client writes and watches the Leases.
	Client kubernetes.Interface
	// Namespace holds the Leases.
	Namespace string
	// Identity names this replica, unique among the replicas alive and the ones that were
	// (a restarted replica is a new member). Empty: DefaultIdentity.
	Identity string
	// Shards is the number of shards the Sites are hashed into (Of). Every replica must
	// use the same. Zero: DefaultShards.
	Shards int
	// LeaseDuration is how long a replica that stopped renewing its member Lease is taken
	// for alive; RenewDeadline how long a replica whose renewals fail goes on acting (it
	// must be shorter); RetryPeriod how often it renews and looks at the others. Zero:
	// the defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Log receives what the replica takes and gives away.
	Log logr.Logger
	// MetricsRegisterer receives vk8s_shard_owned_shards and vk8s_shard_members. Nil:
	// controller-runtime's metrics.Registry.
	MetricsRegisterer prometheus.Registerer
}

// DefaultIdentity is the host name (a pod's name) with a random suffix, so that a
// process restarted in the same pod is a new member.
func DefaultIdentity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host name: %w", err)
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strings.ToLower(host) + "-" + hex.EncodeToString(b), nil
}

// Sharder is one replica's part: it renews the replica's member Lease, takes the shards
// rendezvous hashing gives it (Assign over the live members) once their Leases are free
// or their holder is dead, and hands on the shards that are another's now. Owns says
// which Sites the replica acts for.
type Sharder struct {
	cfg      Config
	informer cache.SharedIndexInformer
	leases   coordinationlisters.LeaseNamespaceLister

	mu sync.Mutex
	// owned[i]: this replica acts for shard i.
	owned []bool
	// validUntil is when this replica stops acting unless its member Lease is renewed: the
	// start of its last successful renewal plus RenewDeadline.
	validUntil time.Time
	// member is this replica's Lease as last written.
	member *coordinationv1.Lease
	// seen records when each Lease was seen to change, on this replica's clock.
	seen map[string]observation
	// handoff maps a shard this replica stopped acting for to when it did; its Lease is
	// released once the others have had time to stop too.
	handoff  map[int]time.Time
	members  []string
	watchers []chan struct{}

	ownedGauge, membersGauge prometheus.Gauge
	// joined is when Run began: for its first settleTicks looks the replica only
	// announces itself, so that replicas started together see each other before they take
	// shards, rather than the first taking all and handing most on.
	joined time.Time
}

// settleTicks is how many RetryPeriods a replica only announces itself.
const settleTicks = 2

type observation struct {
	resourceVersion string
	at              time.Time
}

// New validates cfg and fills in its defaults.
func New(cfg Config) (*Sharder, error) {
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.Identity == "" {
		id, err := DefaultIdentity()
		if err != nil {
			return nil, err
		}
		cfg.Identity = id
	}
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("a host client is required"))
	}
	if cfg.Namespace == "" {
		errs = append(errs, errors.New("the namespace of the Leases is required"))
	}
	if msgs := validation.IsDNS1123Subdomain(MemberPrefix + cfg.Identity); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("identity %q does not make a Lease name (%s): use lower-case letters, digits and '-'", cfg.Identity, strings.Join(msgs, "; ")))
	}
	if cfg.Shards < 1 || cfg.Shards > 4096 {
		errs = append(errs, fmt.Errorf("shards %d: want 1 to 4096", cfg.Shards))
	}
	if cfg.RetryPeriod <= 0 || cfg.RenewDeadline <= cfg.RetryPeriod || cfg.LeaseDuration <= cfg.RenewDeadline {
		errs = append(errs, fmt.Errorf("lease duration %v, renew deadline %v, retry period %v: want lease duration > renew deadline > retry period > 0",
			cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sharding: %w", err)
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	if cfg.MetricsRegisterer == nil {
		cfg.MetricsRegisterer = ctrlmetrics.Registry
	}
	owned, err := promreg.Register(cfg.MetricsRegisterer, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vk8s_shard_owned_shards", Help: "Shards of the Sites this replica acts for (package shard).",
	}))
	if err != nil {
		return nil, err
	}
	members, err := promreg.Register(cfg.MetricsRegisterer, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vk8s_shard_members", Help: "Provider replicas this replica takes for alive, itself included.",
	}))
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelRole }))
	inf := factory.Coordination().V1().Leases()
	return &Sharder{
		cfg: cfg, informer: inf.Informer(), leases: inf.Lister().Leases(cfg.Namespace),
		owned: make([]bool, cfg.Shards), seen: map[string]observation{}, handoff: map[int]time.Time{},
		ownedGauge: owned, membersGauge: members,
	}, nil
}

// Identity is this replica's name among the members.
func (s *Sharder) Identity() string { return s.cfg.Identity }

// Shards is the number of shards.
func (s *Sharder) Shards() int { return s.cfg.Shards }

// Owns says whether this replica acts for site now: it holds the Lease of the site's
// shard, does not hand it on, and its member Lease was renewed within the renew deadline.
func (s *Sharder) Owns(site string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owned[Of(site, s.cfg.Shards)] && time.Now().Before(s.validUntil)
}

// ownsShard is Owns for shard i.
func (s *Sharder) ownsShard(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owned[i] && time.Now().Before(s.validUntil)
}

// Owned lists the shards this replica acts for.
func (s *Sharder) Owned() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for i, o := range s.owned {
		if o {
			out = append(out, i)
		}
	}
	return out
}

// Members lists the members this replica takes for alive, sorted.
func (s *Sharder) Members() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.members)
}

// Watch returns a channel that receives a value each time the shards this replica acts
// for change (coalesced: one value may stand for several changes). Call it before Run.
func (s *Sharder) Watch() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers = append(s.watchers, ch)
	s.mu.Unlock()
	return ch
}

func (s *Sharder) notifyLocked() {
	for _, ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run takes part in the sharding until ctx ends, then stops acting for every shard and
// releases their Leases and its member Lease, so that the others take over at once. It
// returns an error when the member Lease could not be renewed within the renew deadline:
// the replica has stopped acting, and should exit (as a leader that lost its election).
func (s *Sharder) Run(ctx context.Context) error {
	go s.informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return nil
	}
	defer s.release(ctx)
	s.mu.Lock()
	s.joined = time.Now()
	s.mu.Unlock()
	t := time.NewTicker(s.cfg.RetryPeriod)
	defer t.Stop()
	for {
		if err := s.tick(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tick renews the member Lease and takes, keeps or hands on each shard.
func (s *Sharder) tick(ctx context.Context) error {
	start := time.Now()
	if err := s.renew(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if time.Now().Before(s.validUntil) {
			s.cfg.Log.Error(err, "Renewing the member Lease failed; retrying", "actingUntil", s.validUntil)
			return nil
		}
		s.dropAllLocked()
		return fmt.Errorf("sharding: member Lease %s/%s not renewed within %v, stopped acting for every Site: %w",
			s.cfg.Namespace, MemberPrefix+s.cfg.Identity, s.cfg.RenewDeadline, err)
	}
	s.mu.Lock()
	s.validUntil = start.Add(s.cfg.RenewDeadline)
	s.mu.Unlock()

	all, err := s.leases.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list sharding Leases: %w", err)
	}
	now := time.Now()
	shards := make([]*coordinationv1.Lease, s.cfg.Shards)
	live := map[string]bool{s.cfg.Identity: true}
	var stale []*coordinationv1.Lease
	s.mu.Lock()
	for _, l := range all {
		if o, ok := s.seen[l.Name]; !ok || o.resourceVersion != l.ResourceVersion {
			s.seen[l.Name] = observation{resourceVersion: l.ResourceVersion, at: now}
		}
		switch l.Labels[LabelRole] {
		case RoleMember:
			id := strings.TrimPrefix(l.Name, MemberPrefix)
			if id == s.cfg.Identity {
				continue
			}
			idle := now.Sub(s.seen[l.Name].at)
			d := s.cfg.LeaseDuration
			if l.Spec.LeaseDurationSeconds != nil {
				d = max(d, time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second)
			}
			if idle < d {
				live[id] = true
			} else if idle > forgetAfter*d {
				stale = append(stale, l)
			}
		case RoleShard:
			if i, err := strconv.Atoi(strings.TrimPrefix(l.Name, ShardPrefix)); err == nil && i >= 0 && i < s.cfg.Shards {
				shards[i] = l
			}
		}
	}
	for name := range s.seen {
		if _, err := s.leases.Get(name); apierrors.IsNotFound(err) {
			delete(s.seen, name)
		}
	}
	members := make([]string, 0, len(live))
	for m := range live {
		members = append(members, m)
	}
	slices.Sort(members)
	s.members = members
	s.membersGauge.Set(float64(len(members)))
	s.mu.Unlock()

	var errs []error
	for i := range s.cfg.Shards {
		if err := s.settle(ctx, i, shards[i], Assign(i, members), live, now); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range stale {
		err := s.cfg.Client.CoordinationV1().Leases(s.cfg.Namespace).Delete(ctx, l.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &l.ResourceVersion}})
		if err == nil {
			s.cfg.Log.Info("Deleted the member Lease of a replica gone long ago", "lease", l.Name)
		}
	}
	if err := errors.Join(errs...); err != nil && ctx.Err() == nil {
		s.cfg.Log.Error(err, "Taking or handing on shards failed; retrying")
	}
	return nil
}

// settle takes, keeps or hands on shard i, whose Lease is l (nil: none yet) and whose
// owner by the hashing is desired.
func (s *Sharder) settle(ctx context.Context, i int, l *coordinationv1.Lease, desired string, live map[string]bool, now time.Time) error {
	me := s.cfg.Identity
	holder := ""
	if l != nil && l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	s.mu.Lock()
	owned := s.owned[i]
	since, handingOn := s.handoff[i]
	s.mu.Unlock()
	switch {
	case holder == me && desired == me:
		if handingOn {
			s.mu.Lock()
			delete(s.handoff, i)
			s.mu.Unlock()
		}
		if !owned {
			s.set(i, true)
		}
		return nil
	case holder == me:
		// Another member should have it: stop acting, and release the Lease once what acted
		// for its Sites has had time to stop.
		if owned || !handingOn {
			s.set(i, false)
			s.mu.Lock()
			s.handoff[i] = now
			s.mu.Unlock()
			s.cfg.Log.Info("Handing on a shard", "shard", i, "to", desired)
			return nil
		}
		if now.Sub(since) < s.cfg.RenewDeadline {
			return nil
		}
		if err := s.write(ctx, i, l, ""); err != nil && !apierrors.IsConflict(err) {
			return err
		}
		s.mu.Lock()
		delete(s.handoff, i)
		s.mu.Unlock()
		return nil
	case desired == me && (holder == "" || !live[holder]) && now.Sub(s.joinedAt()) >= settleTicks*s.cfg.RetryPeriod:
		if err := s.write(ctx, i, l, me); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				return nil // someone wrote it meanwhile: look again next time
			}
			return err
		}
		s.cfg.Log.Info("Took a shard", "shard", i, "from", holder)
		s.set(i, true)
		return nil
	default:
		if owned {
			s.set(i, false)
		}
		return nil
	}
}

func (s *Sharder) joinedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined
}

// set records whether this replica acts for shard i, and tells the watchers.
func (s *Sharder) set(i int, owned bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owned[i] != owned {
		s.owned[i] = owned
		if owned {
			s.ownedGauge.Inc()
		} else {
			s.ownedGauge.Dec()
		}
		s.notifyLocked()
	}
}

func (s *Sharder) dropAllLocked() {
	for i := range s.owned {
		s.owned[i] = false
	}
	s.ownedGauge.Set(0)
	s.notifyLocked()
}

// write makes holder (empty: nobody) the holder of shard i's Lease l (nil: create it); an
// update carries l's resourceVersion, so it loses to any write in between.
func (s *Sharder) write(ctx context.Context, i int, l *coordinationv1.Lease, holder string) error {
	leases := s.cfg.Client.CoordinationV1().Leases(s.cfg.Namespace)
	now := metav1.NewMicroTime(time.Now())
	if l == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			Name: ShardPrefix + strconv.Itoa(i), Namespace: s.cfg.Namespace, Labels: map[string]string{LabelRole: RoleShard},
		}}
		l.Spec.HolderIdentity = ptr.To(holder)
		l.Spec.AcquireTime = &now
		l.Spec.RenewTime = &now
		_, err := leases.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create Lease of shard %d: %w", i, err)
		}
		return nil
	}
	l = l.DeepCopy()
	l.Spec.HolderIdentity = ptr.To(holder)
	l.Spec.RenewTime = &now
	if holder != "" {
		l.Spec.AcquireTime = &now
		l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	}
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("write Lease of shard %d: %w", i, err)
	}
	return nil
}

// renew writes this replica's member Lease, creating it the first time.
func (s *Sharder) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RenewDeadline)
	defer cancel()
	leases := s.cfg.Client.CoordinationV1().Leases(s.cfg.Namespace)
	now := metav1.NewMicroTime(time.Now())
	s.mu.Lock()
	m := s.member.DeepCopy()
	s.mu.Unlock()
	var err error
	if m == nil {
		m = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			Name: MemberPrefix + s.cfg.Identity, Namespace: s.cfg.Namespace, Labels: map[string]string{LabelRole: RoleMember},
		}}
		m.Spec.HolderIdentity = ptr.To(s.cfg.Identity)
		m.Spec.LeaseDurationSeconds = ptr.To(int32((s.cfg.LeaseDuration + time.Second - 1) / time.Second))
		m.Spec.AcquireTime, m.Spec.RenewTime = &now, &now
		m, err = leases.Create(ctx, m, metav1.CreateOptions{})
	} else {
		m.Spec.RenewTime = &now
		m, err = leases.Update(ctx, m, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) {
		// Written or deleted behind this replica's back: start again from the server's.
		s.mu.Lock()
		s.member = nil
		s.mu.Unlock()
		if cur, gerr := leases.Get(ctx, MemberPrefix+s.cfg.Identity, metav1.GetOptions{}); gerr == nil {
			cur.Spec.RenewTime = &now
			m, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("renew member Lease %s/%s: %w", s.cfg.Namespace, MemberPrefix+s.cfg.Identity, err)
	}
	s.mu.Lock()
	s.member = m
	s.mu.Unlock()
	return nil
}

// release stops acting for every shard, then clears the holder of the shards' Leases and
// deletes the member Lease, so that the others take over without waiting for them to
// expire.
func (s *Sharder) release(ctx context.Context) {
	s.mu.Lock()
	s.dropAllLocked()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RenewDeadline)
	defer cancel()
	leases := s.cfg.Client.CoordinationV1().Leases(s.cfg.Namespace)
	list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: LabelRole + "=" + RoleShard})
	if err == nil {
		for i := range list.Items {
			l := &list.Items[i]
			if ptr.Deref(l.Spec.HolderIdentity, "") != s.cfg.Identity {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimPrefix(l.Name, ShardPrefix)); err == nil {
				_ = s.write(ctx, n, l, "")
			}
		}
	}
	if err := leases.Delete(ctx, MemberPrefix+s.cfg.Identity, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.cfg.Log.Error(err, "Could not delete the member Lease; the others wait for it to expire")
	}
}
