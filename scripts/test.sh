#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test
# of the workspace (unit, integration, compile-fail and doc tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-test-deps.sh
export LLMD_TEST_PYTHON="$root/.venv/bin/python"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
