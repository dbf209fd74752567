#!/usr/bin/env bash
# Runs go vet and the race-enabled tests of every package, as CI does.
# Tests that read the steering repository's shared/testdata (real audit-log
# samples, laid beside the repository in CI) cannot run where it is absent,
# e.g. in Cloud Build, which gets only this repository: their packages are
# listed as not tested here. CI (.ci/run) stays the full gate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

go vet ./...

shared=""
dir=$PWD
while [[ "$dir" != / ]]; do
  if [[ -d "$dir/shared/testdata" ]]; then
    shared="$dir/shared"
    break
  fi
  dir=$(dirname "$dir")
done

packages=()
untested=()
while read -r import_path package_dir; do
  if [[ -z "$shared" ]] && grep -qs 'shared/testdata' "$package_dir"/*_test.go; then
    untested+=("$import_path")
  else
    packages+=("$import_path")
  fi
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)

if ((${#untested[@]} > 0)); then
  printf 'not tested here (they need shared/testdata, which only CI has):\n' >&2
  printf '  %s\n' "${untested[@]}" >&2
fi
go test -race -count=1 "${packages[@]}"
