#!/usr/bin/env bash
# Installs what the project needs beyond the Rust toolchain: Debian packages
# (scripts/apt-packages.txt: libzmq for the KV-event sockets, redis-server for
# the shared-index tests) and, unless --no-python is given, a Python
# virtualenv at .venv with the packages of scripts/requirements-test.txt.
# Idempotent: quick when everything is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mapfile -t apt_pkgs < <(grep -v '^\s*#' scripts/apt-packages.txt | sed '/^\s*$/d')
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-python" ] && [ -s scripts/requirements-test.txt ]; then
  stamp=".venv/.requirements.sha"
  want="$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)"
  if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv with scripts/requirements-test.txt"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
    echo "$want" > "$stamp"
  fi
fi
