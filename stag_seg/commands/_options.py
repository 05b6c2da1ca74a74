"""Argument helpers the commands share (not a command itself)."""
from mmengine.config import DictAction


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
