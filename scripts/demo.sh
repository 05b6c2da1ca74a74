#!/usr/bin/env bash
# The offline demo end to end (tools/demo.py; arguments passed through), in the repo's .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
exec python tools/demo.py "$@"
