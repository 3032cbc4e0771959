#!/usr/bin/env bash
# Regenerates, with the pinned controller-gen: deepcopy code and CRDs from api/, and the
# chart's generated templates (charts/vk8s/templates: the CRDs, wrapped, and each process's
# RBAC from the +kubebuilder:rbac markers of its packages; hack/chartgen).
# Usage: hack/update-codegen.sh [ROOT]   (ROOT defaults to this checkout)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${1:-$(cd "$here/.." && pwd)}
"$here/tools.sh" build controller-gen
cg="$("$here/tools.sh" dir)/controller-gen"
cd "$root"
"$cg" object:headerFile=hack/boilerplate.go.txt paths=./api/...
rm -f api/crds/*.yaml
# generateEmbeddedObjectMeta: an Override's pod template keeps its metadata (labels,
# annotations) instead of the API server pruning it.
"$cg" crd:generateEmbeddedObjectMeta=true paths=./api/... output:crd:artifacts:config=api/crds

# The packages of each process: what they call on the host is what its RBAC allows.
rbac=$(mktemp -d)
trap 'rm -rf "$rbac"' EXIT
"$cg" rbac:roleName=vk8s-provider paths=./provider/... paths=./sitereg/... paths=./vnode/... \
	paths=./kubeletapi/... paths=./mirror/... paths=./storage/... paths=./tenancy/... paths=./siteadm/... \
	output:rbac:artifacts:config="$rbac/provider"
"$cg" rbac:roleName=vk8s-webhook paths=./webhook/... paths=./federation/... \
	output:rbac:artifacts:config="$rbac/webhook"
go run ./hack/chartgen -crds api/crds -rbac "$rbac" -chart charts/vk8s
