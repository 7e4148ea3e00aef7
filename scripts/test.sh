#!/usr/bin/env bash
# The one command that checks everything: formatting, lints, unit and end-to-end tests.
# The tests start every server they need themselves (ArqonBus nodes on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0

# The integration tests (integration/) start their own redis-server, redis-sentinel and
# redis-cli --cluster processes on free ports; install Redis when any of them is missing.
# A Redis that the packages start as a system service (6379, 26379) is never used: every
# test process binds a kernel-chosen port and talks only to the servers it started.
missing=()
for tool in redis-server redis-cli redis-sentinel; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Redis (missing: ${missing[*]})"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get here: install Redis 7 (redis-server, redis-cli, redis-sentinel) and re-run" >&2
    exit 1
  fi
  as_root() {
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
  }
  packages=(redis-server redis-tools redis-sentinel)
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
  fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  # The crate has no doctests; nextest runs every unit and end-to-end test.
  cargo nextest run --locked --no-fail-fast --test-threads 4
else
  cargo test --locked --no-fail-fast
fi
