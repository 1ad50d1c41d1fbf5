#!/usr/bin/env bash
# `make test`: lint, type checks, then the whole suite against throwaway PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
. scripts/lib.sh
ensure_tool jq jq      # the quickstart walk-through runs as written (tests/test_quickstart.py)
ensure_tool curl curl
ensure_tool chromium chromium   # the console's browser tests (tests/console_ui), by executable path
ensure_file /usr/share/fonts/truetype/wqy/wqy-microhei.ttc fonts-wqy-microhei  # Chinese in their screenshots
ensure_pgbouncer       # two web instances and two workers behind PgBouncer (tests/scale)
exec scripts/with-services.sh .venv/bin/python -m pytest "$@"
