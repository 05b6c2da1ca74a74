#!/usr/bin/env bash
# The fast mode's checks on one GPU, in parts that each fit a few minutes:
#   scripts/gpu_check.sh [tests|bench|demo|all]     (default: all, ~10 minutes on an H100)
# tests: tests/test_fast_step.py with CUDA (captured steps equal eager ones, the demo stream's
#        fast records within 0.2 mIoU of eager fp32's); bench: tools/benchmark.py --device cuda
#        --quick (the GPU targets, PASS/FAIL); demo: the demo stream (tent, tent + STAG, 2 rounds,
#        4 images per condition) eager fp32 and in the fast mode, compared per domain.
# Everything printed also goes to $OUT (default: work_dirs/gpu_check). On a machine without the
# OpenMMLab packages, wheels in .whl/ are installed to /tmp/site first (docs/performance.md,
# "Not measured here (no GPU)").
set -uo pipefail
part=${1:-all}
case $part in tests|bench|demo|all) ;; *) echo "usage: $0 [tests|bench|demo|all]" >&2; exit 2;; esac
out=${OUT:-}
[[ -n $out ]] && { mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${out:-$PWD/work_dirs/gpu_check}
mkdir -p "$out"
py=$(command -v python || command -v python3)
if ! "$py" -c 'import mmseg' 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: mmseg is not importable and there are no wheels in .whl/" >&2; exit 1
  fi
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
"$py" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)' \
  2>&1 | tee "$out/device.txt" || exit 1
status=0
if [[ $part == tests || $part == all ]]; then
  STAG_TEST_CUDA=1 timeout 300 "$py" -m pytest -q -p no:cacheprovider --tb=line -rfs \
    tests/test_fast_step.py 2>&1 | tee "$out/tests.txt" || status=1
fi
if [[ $part == bench || $part == all ]]; then
  timeout 330 "$py" tools/benchmark.py --device cuda --quick \
    --out "$out/benchmark_quick.json" 2>&1 | tee "$out/benchmark_quick.txt" || status=1
fi
if [[ $part == demo || $part == all ]]; then
  for fast in False True; do
    timeout 240 "$py" tools/demo.py --methods tent tent+stag --rounds 2 --images 4 \
      --data-root "$out/demo_data" --work-dir "$out/demo_fast_$fast" \
      --cfg-options test_cfg.fast=$fast > "$out/demo_fast_$fast.txt" 2>&1 || status=1
  done
  : > "$out/demo_compare.txt"
  for method in tent tent_stag; do
    "$py" tools/compare_runs.py "$out/demo_fast_False/$method" "$out/demo_fast_True/$method" \
      --names "$method eager fp32" "$method fast" --out "$out/demo_$method.png" 2>&1 \
      | tee -a "$out/demo_compare.txt" || status=1
  done
fi
exit $status
