#!/usr/bin/env bash
# Builds the lab's and the tests' tools from source through the Go module proxy, once per
# machine, into a cache outside the checkout keyed by version, so later clones and CI reuse
# them. Nothing is downloaded but Go modules.
#
#   hack/tools.sh build [SET]  build what is missing (a no-op when warm); SET limits it to one
#                              of controller-gen, kubernetes, etcd, kwok, helm, metrics-server,
#                              golangci-lint
#   hack/tools.sh dir          print the folder that holds every tool (put it first on PATH)
#
# VK8S_TOOLS_CACHE overrides the cache folder (default: $XDG_CACHE_HOME/vk8s/tools).
set -euo pipefail

# Versions: change one here and only that tool is rebuilt.
KUBERNETES_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v4.3.1
CONTROLLER_GEN_VERSION=v0.20.1
GOLANGCI_LINT_VERSION=v2.15.0
# metrics-server: hack/tools/metrics-server/go.mod pins it (and its Kubernetes libraries);
# change both together.
METRICS_SERVER_VERSION=v0.9.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VK8S_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vk8s/tools}
# The bin folder's name carries every version, so a version change gives a new folder and
# scripts that print it never mix tools of two versions.
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_cg-${CONTROLLER_GEN_VERSION}_ms-${METRICS_SERVER_VERSION}"
bindir="$cache/bin-$key"

log() { printf 'tools: %s\n' "$*" >&2; }

# build_set NAME VERSION FUNC: runs FUNC OUT once; OUT/.done marks a finished build so an
# interrupted one starts again.
build_set() {
	local name=$1 version=$2 fn=$3
	local out="$cache/$name-$version"
	if [[ -f "$out/.done" ]]; then
		return 0
	fi
	log "building $name $version into $out (cold builds take minutes; later runs reuse it)"
	local start=$SECONDS
	rm -rf "$out"
	mkdir -p "$out"
	"$fn" "$out"
	touch "$out/.done"
	log "built $name $version in $((SECONDS - start))s"
}

build_kubernetes() {
	local out=$1 minor=${KUBERNETES_VERSION#v1.} ldflags="-s -w" pkg key val
	minor=${minor%%.*}
	local -A stamp=(
		[gitVersion]=$KUBERNETES_VERSION [gitMajor]=1 [gitMinor]=$minor
		[gitCommit]=0000000000000000000000000000000000000000 [gitTreeState]=clean
		[buildDate]=1970-01-01T00:00:00Z
	)
	for key in "${!stamp[@]}"; do
		val=${stamp[$key]}
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=" -X $pkg.$key=$val"
		done
	done
	(cd "$root/hack/tools/kubernetes" && go build -trimpath -tags selinux,notest,grpcnotrace \
		-ldflags "$ldflags" -o "$out/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
	(cd "$root/hack/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$1/" \
		go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3)
	mv "$1/server" "$1/etcd"
}

build_kwok() {
	GOBIN=$1 go install -trimpath -ldflags "-s -w" \
		"sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_helm() {
	GOBIN=$1 go install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
		"helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

# metrics-server stamps only client-go's version, as its own Makefile does: component-base's
# version is the Kubernetes version its API server library emulates and must stay unset.
build_metrics_server() {
	local pkg=k8s.io/client-go/pkg/version
	(cd "$root/hack/tools/metrics-server" && go build -trimpath \
		-ldflags "-s -w -X $pkg.gitVersion=$METRICS_SERVER_VERSION -X $pkg.gitTreeState=clean" \
		-o "$1/" sigs.k8s.io/metrics-server/cmd/metrics-server)
}

build_controller_gen() {
	GOBIN=$1 go install -trimpath -ldflags "-s -w" \
		"sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
}

build_golangci_lint() {
	GOBIN=$1 go install -trimpath -ldflags "-s -w" \
		"github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
}

# link SET: puts SET's binaries into the bin folder.
link() {
	local f
	mkdir -p "$bindir"
	for f in "$cache/$1"/*; do
		ln -sfn "$f" "$bindir/$(basename "$f")"
	done
}

build() {
	local only=${1:-}
	local sets=(
		"controller-gen $CONTROLLER_GEN_VERSION build_controller_gen"
		"kubernetes $KUBERNETES_VERSION build_kubernetes"
		"etcd $ETCD_VERSION build_etcd"
		"kwok $KWOK_VERSION build_kwok"
		"helm $HELM_VERSION build_helm"
		"metrics-server $METRICS_SERVER_VERSION build_metrics_server"
	)
	local s name version fn
	for s in "${sets[@]}"; do
		read -r name version fn <<<"$s"
		[[ -z "$only" || "$only" == "$name" ]] || continue
		build_set "$name" "$version" "$fn"
		link "$name-$version"
	done
	if [[ "$only" == golangci-lint ]]; then
		build_set golangci-lint "$GOLANGCI_LINT_VERSION" build_golangci_lint
		link "golangci-lint-$GOLANGCI_LINT_VERSION"
		return
	fi
	[[ -z "$only" ]] || return 0
	local f
	# Every tool the lab and the tests run must be there.
	for f in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd etcdctl etcdutl \
		kwok kwokctl helm controller-gen metrics-server; do
		[[ -x "$bindir/$f" ]] || { log "missing $f in $bindir"; exit 1; }
	done
}

case "${1:-build}" in
build) build "${2:-}" ;;
dir) echo "$bindir" ;;
kubernetes-version) echo "$KUBERNETES_VERSION" ;;
*)
	echo "usage: $0 build|dir|kubernetes-version" >&2
	exit 2
	;;
esac
