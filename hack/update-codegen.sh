#!/usr/bin/env bash
# Regenerates deepcopy code and CRDs from api/ with the pinned controller-gen.
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
