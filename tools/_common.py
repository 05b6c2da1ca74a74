"""What every tools/*.py imports first: outside the project's environment, one line naming the
command that sets it up (not a ModuleNotFoundError). The commands' own code (and the
``--cfg-options`` action) is in stag_seg/commands/."""
import importlib.util
import os.path as osp
import sys

SETUP = ("run `source scripts/env.sh` first (it creates .venv if missing), or install by "
         "hand: pip install -e '.[lite]' (README: Installing by hand)")


def _check_environment() -> None:
    missing = [m for m in ('torch', 'mmengine', 'mmseg') if importlib.util.find_spec(m) is None]
    if missing:
        tool = osp.splitext(osp.basename(sys.argv[0]))[0] or 'stag-seg'
        sys.exit(f'{tool}: {", ".join(missing)} not installed for {sys.executable}; {SETUP}')


_check_environment()
