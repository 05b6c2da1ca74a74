# shellcheck shell=bash
# Source me: creates/updates the repo's .venv (idempotent, keyed by a hash of setup.py) and
# activates it. Env vars: STAG_PYTHON (interpreter for a new venv), STAG_TORCH_SPEC (pip spec
# used only when torch is not importable in the venv; default torch==2.13.0, a CPU build).

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

  want="$(cd "$root" && for f in setup.py setup.cfg requirements*.txt; do
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
    echo "[env] installing stag-seg (editable) with dev extras"
    "${pip[@]}" -e "$root[dev]" || return 1
    echo "$want" >"$stamp"
  fi

  export VIRTUAL_ENV="$venv"
  case ":$PATH:" in
    *":$venv/bin:"*) ;;
    *) export PATH="$venv/bin:$PATH" ;;
  esac
}

_stag_env || { echo "[env] environment setup failed" >&2; return 1 2>/dev/null || exit 1; }
