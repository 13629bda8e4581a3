#!/usr/bin/env bash
# The main job: installs the system libraries the stack links against, then
# builds and runs the local stack demo. Arguments go to llmd-stack
# (e.g. `scripts/stack.sh --serve`; `scripts/stack.sh --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup-test-deps.sh --no-python
exec cargo run --release --locked -p llmd-tests --bin llmd-stack -- "$@"
