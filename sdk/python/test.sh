#!/usr/bin/env bash
# Tests of the Python SDK: a virtualenv (sdk/python/.venv, ignored by git), the package with its
# test extras, `mypy --strict`, then pytest against real arqonbus nodes and redis-server.
#
#   sdk/python/test.sh [pytest args…]
#
# The server binary: $ARQONBUS_BIN when set, else `cargo build --release` at the repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server with apt-get"
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi

python="${PYTHON:-python3}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e "sdk/python[test]"

echo "== mypy --strict"
(cd "$here" && "$venv/bin/mypy" --strict src examples bench)

echo "== pytest"
cd "$here"
exec "$venv/bin/pytest" "$@"
