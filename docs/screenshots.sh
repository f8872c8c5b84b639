#!/usr/bin/env bash
# Regenerates the console screenshots the README shows (docs/console-*.png): the browser tests
# run against their real deployment (phigate serve, psql and psycopg traffic, phigate console)
# and save what headless Chromium shows.
set -euo pipefail
cd "$(dirname "$0")/.."
make .venv/.installed >/dev/null
PHIGATE_SCREENSHOTS=docs .venv/bin/python -m pytest -q tests/console/test_browser.py
