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

package provider

import (
	"context"

	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	vk8sv1 "github.com/vk8s-io/vk8s/api/v1alpha1"
	"github.com/vk8s-io/vk8s/shard"
	"github.com/vk8s-io/vk8s/sitereg"
)

// Sharding's Leases, in the release namespace: a member Lease per replica and one per
// shard (package shard).
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;delete,namespace=vk8s-system

// everyReplica runs a runnable on every replica, elected or not: with sharding, what acts
// for a Site follows the Site's owner (package shard), not the leader election.
type everyReplica struct{ manager.Runnable }

// NeedLeaderElection is false: see everyReplica.
func (everyReplica) NeedLeaderElection() bool { return false }

// shardedManager adds every runnable (controllers included, which builders add through
// it) as everyReplica.
type shardedManager struct{ ctrl.Manager }

func (m shardedManager) Add(r manager.Runnable) error { return m.Manager.Add(everyReplica{r}) }

// newSharder makes this replica's part in the sharding of the Sites.
func newSharder(host kubernetes.Interface, cfg Config) (*shard.Sharder, error) {
	return shard.New(shard.Config{
		Client: host, Namespace: cfg.LeaderElectionNamespace, Identity: cfg.ShardIdentity, Shards: cfg.Shards,
		Log: cfg.Logger.WithName("shard"),
	})
}

// followOwnership tells the registry of every Site whose owner changed, each time the
// shards this replica acts for change; the registry lets go of or takes on the Site, and
// its watchers (virtual nodes, pods, mirror) follow. It runs until ctx ends.
func followOwnership(ctx context.Context, sh *shard.Sharder, changes <-chan struct{}, sites client.Reader, reg *sitereg.Registry) error {
	log := ctrl.LoggerFrom(ctx).WithName("shard")
	owned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		}
		var list vk8sv1.SiteList
		if err := sites.List(ctx, &list); err != nil {
			log.Error(err, "List Sites failed; their owners are looked at with the next change")
			continue
		}
		var moved []string
		now := map[string]bool{}
		for _, s := range list.Items {
			now[s.Name] = sh.Owns(s.Name)
			if now[s.Name] != owned[s.Name] {
				moved = append(moved, s.Name)
			}
		}
		owned = now
		if len(moved) > 0 {
			log.Info("Sites changed owner", "sites", len(moved), "shards", sh.Owned())
			reg.OwnershipChanged(moved...)
		}
	}
}
