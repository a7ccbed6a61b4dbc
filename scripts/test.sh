#!/usr/bin/env bash
# The whole test suite (make test): every step runs even when an earlier one
# failed, so one run reports everything; the exit status is 1 if any failed.
# As root (CI) every test runs; as a normal user the tests that need root
# (real OS users, cgroups) skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
failed=()
step() {
  local name=$1; shift
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    echo "==> $name: ok ($((SECONDS - t0)) s)"
  else
    echo "==> $name: FAILED ($((SECONDS - t0)) s)"
    failed+=("$name")
  fi
}
step "go vet" $GO vet ./...
step "go test -race" $GO test -race -count=1 -timeout 20m ./...
# A few end-to-end stories again with race-built agents (a race in the
# agent fails the test).
step "e2e with race-built agents" env TETHER_E2E_RACE=1 $GO test -race -count=1 -timeout 10m \
  -run 'TestInvokeBare|TestDisconnectedFromAnotherClient|TestBusyAndForce|TestAgentKill9|TestSessionLimits|TestOtherUsers' ./internal/e2e
# The end-to-end suite runs against bash sessions above (the default);
# here once more against the builtin interpreter.
# Skipped here: stories that never depend on the session's shell (they pick
# bash themselves, or never run a command) and wait on real timeouts.
step "e2e with builtin sessions" env TETHER_E2E_SHELL=builtin $GO test -count=1 -timeout 10m \
  -skip '^(TestBashLoginProfile|TestAttackIdleChannels|TestStockSSHIdleChannelClosed)$' ./internal/e2e
step "fuzz (3 s each)" ./scripts/fuzz.sh 3s
if [ ${#failed[@]} -gt 0 ]; then
  echo "make test: FAILED: ${failed[*]}"
  exit 1
fi
echo "make test: all steps passed ($(id -un))"
