# shellcheck shell=bash
# Source me: creates/updates the repo's .venv (idempotent, keyed by a hash of setup.py and this
# script) and activates it. Env vars: STAG_PYTHON (interpreter for a new venv), STAG_TORCH_SPEC
# (pip spec used only when torch is not importable in the venv; default torch==2.13.0, a CPU
# build). Torch goes in first, on its own (a bare `torch` or a range can pull a multi-GB CUDA
# build), and stays pinned while pip installs stag-seg with its extras lite (mmcv-lite), dev
# (pytest, ruff) and sweep (Ray), on numpy 2: what a fresh install resolves, and `numpy>=2`
# also moves a venv made before numpy 2 was allowed onto it.

_stag_env() {
  local root venv py stamp want f
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/.venv"
  stamp="$venv/.stag-install-stamp"

  if [ ! -x "$venv/bin/python" ]; then
    py="${STAG_PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    if [ -z "$py" ]; then
      echo "[env] no python3.11/python3 found; set STAG_PYTHON" >&2
      return 1
    fi
    echo "[env] creating $venv with $py"
    "$py" -m venv "$venv" || return 1
  fi

  want="$(cd "$root" && for f in setup.py setup.cfg requirements*.txt scripts/env.sh; do
    if [ -f "$f" ]; then sha256sum "$f"; fi
  done | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    local pip=("$venv/bin/python" -m pip install -q)
    echo "[env] checking pip"
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 \
      || "$venv/bin/python" -m ensurepip --upgrade >/dev/null || return 1
    if "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
      echo "[env] torch already installed, keeping it"
    else
      echo "[env] installing ${STAG_TORCH_SPEC:-torch==2.13.0}"
      "${pip[@]}" "${STAG_TORCH_SPEC:-torch==2.13.0}" || return 1
    fi
    # Pin the venv's torch so that the project install can never swap it for another build.
    local pins="$venv/.stag-torch-pin.txt"
    "$venv/bin/python" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' \
      >"$pins" || return 1
    echo "[env] installing stag-seg (editable) with extras lite,dev,sweep on $(cat "$pins")"
    "${pip[@]}" -c "$pins" -e "$root[lite,dev,sweep]" 'numpy>=2' || {
      echo "[env] installing stag-seg failed; the venv keeps its $(cat "$pins"): if setup.py" \
        "does not accept it, remove .venv (STAG_TORCH_SPEC picks the torch for a new one)" >&2
      return 1
    }
    echo "$want" >"$stamp"
  fi

  export VIRTUAL_ENV="$venv"
  case ":$PATH:" in
    *":$venv/bin:"*) ;;
    *) export PATH="$venv/bin:$PATH" ;;
  esac
}

_stag_env || { echo "[env] environment setup failed" >&2; return 1 2>/dev/null || exit 1; }
