#!/usr/bin/env bash
# Lint (ruff) and run the test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
echo "[test] ruff check ."
ruff check .
echo "[test] pytest"
exec python -m pytest -q tests "$@"
