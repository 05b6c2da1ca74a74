"""Config values as ``--cfg-options KEY=TEXT`` arguments that mmengine parses back unchanged.

``DictAction`` (mmengine) reads ints, floats, bools, None, plain strings, and lists/tuples of
those; nested dicts travel as dotted keys, which ``Config.merge_from_dict`` merges exactly as it
would merge the dict. Every encoded value is parsed back with ``DictAction`` and compared, so a
value that would silently change type (the string ``'1e-4'``, a string with a space) is refused.
"""
from __future__ import annotations

from typing import Any

from mmengine.config import DictAction


def flatten(options: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    """``{'a': {'b': 1}, 'c': 2}`` -> ``{'a.b': 1, 'c': 2}`` (lists and tuples stay values)."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            if not value:
                raise ValueError(f'{name}: an empty dict cannot be passed as --cfg-options')
            flat.update(flatten(value, prefix=f'{name}.'))
        else:
            flat[name] = value
    return flat


def _text(value: Any) -> str:
    if isinstance(value, (bool, int, str)) or value is None:
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return '[' + ','.join(_text(v) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ','.join(_text(v) for v in value) + ')'
    raise ValueError(f'{type(value).__name__} values cannot be passed as --cfg-options')


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (1 == 1.0 == True does not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def encode_value(value: Any) -> str:
    """The ``--cfg-options`` text of ``value``; ValueError when mmengine would misread it."""
    text = _text(value)
    back = DictAction._parse_iterable(text)
    if not _same(back, value):
        raise ValueError(f'{value!r} does not survive --cfg-options (it would be read back as '
                         f'{back!r}); use ints, floats, bools, None, strings without spaces, '
                         'commas, brackets or quotes that do not look like numbers, or '
                         'lists/tuples of those')
    return text


def to_cli(options: dict[str, Any]) -> list[str]:
    """``KEY=TEXT`` arguments for ``--cfg-options`` (dicts flattened into dotted keys)."""
    return [f'{key}={encode_value(value)}' for key, value in flatten(options).items()]
