#!/usr/bin/env bash
# The one command that checks everything: formatting, lints, unit and end-to-end tests.
# The tests start every server they need themselves (ArqonBus nodes on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0

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
