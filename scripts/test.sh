#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test
# of the workspace (unit, integration, compile-fail, cross-process and doc
# tests) and ends with one summary line of all the test counts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-test-deps.sh
export LLMD_TEST_PYTHON="$root/.venv/bin/python"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets --locked 2>&1 | tee "$log"
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "Tests: %d passed, %d failed\n", passed, failed }' "$log"
