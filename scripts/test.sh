#!/usr/bin/env bash
# Lint (ruff) and run the test suite on two pytest-xdist workers (each takes whole test files:
# tests/conftest.py); extra arguments go to pytest (test paths among them run instead of the
# whole of tests/, pyproject's testpaths; `-n 0` runs in one process, `-n 4` on four workers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
python - <<'PY'
import platform
from importlib import metadata

dists = {d.metadata['Name'].lower(): d.version for d in metadata.distributions()}
names = ('torch', 'numpy', 'mmcv', 'mmcv-lite', 'mmengine', 'mmsegmentation', 'opencv-python')
stack = [f'python {platform.python_version()}'] + [f'{n} {dists[n]}' for n in names if n in dists]
print('[test] stack:', ', '.join(stack))
PY
echo "[test] ruff check ."
ruff check .
echo "[test] pytest"
exec python -m pytest -q -n 2 "$@"
