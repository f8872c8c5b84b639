#!/usr/bin/env bash
# pgbench -S directly, through PHIGate, through pgbouncer and through a bare Python byte relay.
# All options go to bench/pgbench.py (--quick, --seconds N, --clients 1,8,32, --modes ...,
# --targets ..., --json FILE); see `bench/pgbench.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pgbouncer >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q pgbouncer >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q pgbouncer >/dev/null; } \
        || echo "pgbench.sh: could not install pgbouncer; it will be skipped" >&2
fi
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
PYTHONPATH=. exec "$PYTHON" bench/pgbench.py "$@"
