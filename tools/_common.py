"""What every tools/*.py imports first: outside the project's environment, one line naming the
command that sets it up (not a ModuleNotFoundError); and the ``--cfg-options`` action."""
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

from mmengine.config import DictAction  # noqa: E402


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction``, except that a plain value (no bracket, no comma) keeps its
    inner spaces: ``data_root='/data/my acdc'`` stays ``/data/my acdc`` (mmengine would drop
    every space, giving ``/data/myacdc``). Lists and tuples parse as in mmengine."""

    @staticmethod
    def _parse_iterable(val: str):
        plain = val.strip().strip('\'"').strip()
        if not any(c in plain for c in '[](),'):
            return DictAction._parse_int_float_bool(plain)
        return DictAction._parse_iterable(val)
