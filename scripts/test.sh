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
for tool in redis-server redis-cli redis-sentinel prometheus promtool; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Redis and Prometheus (missing: ${missing[*]})"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get here: install Redis 7 (redis-server, redis-cli, redis-sentinel) and re-run" >&2
    exit 1
  fi
  as_root() {
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
  }
  packages=(redis-server redis-tools redis-sentinel prometheus)
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
  fi
fi

# The test runner: cargo-nextest runs each test in its own process (tests read per-process
# metrics). Installed from crates.io when missing.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest (missing)"
  cargo install cargo-nextest --locked
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests (memory backplane; integration/ starts its own Redis topologies)"
# The crates have no doctests; nextest runs every unit, end-to-end and integration test of the
# workspace (the gateway and the load driver, bench/).
cargo nextest run --workspace --locked --no-fail-fast --test-threads 4

# The protocol tests of tests/ once more, every node on a real Redis: both backplanes must
# behave the same to a client.
echo "==> protocol tests again, on the Redis backplane"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis_dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
  --logfile "$redis_dir/redis.log" --daemonize yes --pidfile "$redis_dir/redis.pid"
trap 'kill "$(cat "$redis_dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
TEST_REDIS_URL="redis://127.0.0.1:$port" cargo nextest run --locked --no-fail-fast --test-threads 4 \
  -E 'kind(test) and not binary(harness) and not binary(/^redis_/) and not binary(prometheus) and not binary(otel) and not binary(/^fuzz_/) and not binary(storm)'

# The release binary: what the image ships, and the server the SDK suites run against.
echo "==> cargo build --release"
cargo build --release --locked --bin arqonbus
export ARQONBUS_BIN="$PWD/target/release/arqonbus"

echo "==> deployment: Helm chart, kustomize overlays, Dockerfile (offline)"
./scripts/test-deploy.sh

echo "==> Python SDK"
./sdk/python/test.sh

echo "==> TypeScript SDK (Node and headless Chromium)"
./sdk/js/test.sh
