#!/usr/bin/env bash
# Fails when a Go file of the checkout (tracked or new) does not start with the license
# header of hack/boilerplate.go.txt (also controller-gen's headerFile), after its //go:build
# line and that line's blank line when it has one: a build constraint must come before any
# block comment. Prints those files, one a line; hack/update-headers.sh adds the header.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
boilerplate=hack/boilerplate.go.txt
want=$(cat "$boilerplate")
lines=$(wc -l <"$boilerplate")

missing=0
while IFS= read -r -d '' f; do
	[[ -f $f ]] || continue # deleted, not yet staged
	start=1
	first=
	IFS= read -r first <"$f" || true
	if [[ $first == //go:build* ]]; then
		start=3
	fi
	if [[ "$(tail -n +"$start" "$f" | head -n "$lines")" != "$want" ]]; then
		echo "$f"
		missing=$((missing + 1))
	fi
done < <(git ls-files -z -co --exclude-standard -- '*.go')

if ((missing)); then
	echo "$missing Go files lack the license header of $boilerplate: run hack/update-headers.sh" >&2
	exit 1
fi
