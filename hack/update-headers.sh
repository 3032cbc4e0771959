#!/usr/bin/env bash
# Adds the license header of hack/boilerplate.go.txt to every Go file of the checkout that
# hack/verify-headers.sh finds without it: first, or after the file's //go:build line and a
# blank line (a build constraint must come before any block comment).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
boilerplate=$here/boilerplate.go.txt
cd "$root"
mapfile -t files < <("$here/verify-headers.sh" 2>/dev/null || true)
for f in "${files[@]}"; do
	first=
	IFS= read -r first <"$f" || true
	tmp=$(mktemp)
	if [[ $first == //go:build* ]]; then
		{ printf '%s\n\n' "$first"; cat "$boilerplate"; echo; tail -n +2 "$f" | sed '1{/^$/d}'; } >"$tmp"
	else
		{ cat "$boilerplate"; echo; cat "$f"; } >"$tmp"
	fi
	cat "$tmp" >"$f" # keeps the file's mode
	rm -f "$tmp"
done
echo "license header added to ${#files[@]} Go files" >&2
