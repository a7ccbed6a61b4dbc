#!/usr/bin/env bash
# Runs every Fuzz target of the module for the given time each (default 3s).
# Crashers land in the package's testdata/fuzz and then run as regression
# tests in every plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-3s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $f ($t)"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/tmp/tether-fuzz.log 2>&1 || { cat /tmp/tether-fuzz.log; exit 1; }
  done
done
