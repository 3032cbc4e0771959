#!/usr/bin/env bash
# Fails when the generated files (api/, the chart's templates) differ from what
# hack/update-codegen.sh makes.
# It generates into a copy of the checkout and leaves this one untouched.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp")
"$here/update-codegen.sh" "$tmp" >/dev/null
if ! diff -ru "$root/api" "$tmp/api" || ! diff -ru "$root/charts/vk8s/templates" "$tmp/charts/vk8s/templates"; then
	echo "generated files are stale: run make generate" >&2
	exit 1
fi
