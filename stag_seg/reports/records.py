"""Per-(round, domain) result records, stored one JSON line each in ``results.jsonl``.

Records hold plain JSON: numpy / torch scalars become Python numbers, the metrics (``mIoU``,
``mAcc``, ``aAcc`` and the per-class ``IoU`` / ``Acc`` values, percent) are rounded to 2
decimals, and an undefined value (NaN or inf, e.g. a domain whose labels are all the ignore
index) is ``null``; reports treat a ``null`` metric as "n/a" and leave it out of every mean.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
import os
import os.path as osp
from collections.abc import Callable, Sequence
from typing import Any

from mmengine.logging import print_log

from stag_seg.reports.atomic import atomic_write, disk_full_error

RESULTS_FILE = 'results.jsonl'
REQUIRED_KEYS = ('method', 'round', 'domain', 'num_images', 'mIoU', 'mAcc', 'aAcc', 'IoU',
                 'skipped_updates')
METRIC_KEYS = ('mIoU', 'mAcc', 'aAcc')
CLASS_METRIC_KEYS = ('IoU', 'Acc')
METRIC_DECIMALS = 2
TORN_TAIL_OPTIONS = ('raise', 'drop')


def results_path(work_dir_or_file: str) -> str:
    """Path of ``results.jsonl`` for a work dir (a file path is returned unchanged)."""
    if osp.isdir(work_dir_or_file):
        return osp.join(work_dir_or_file, RESULTS_FILE)
    return work_dir_or_file


def _plain(value: Any) -> Any:
    """``value`` with numpy / torch scalars as Python scalars, containers as dicts / lists and
    non-finite floats as None."""
    if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:   # numpy / torch scalar
        value = value.item()
    elif hasattr(value, 'tolist') and hasattr(value, 'ndim'):         # numpy array / tensor
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metric(value: Any, where: str) -> float | None:
    """A metric rounded to METRIC_DECIMALS, or None when undefined."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'result record {where} must be a number or null, got {value!r}')
    return round(float(value), METRIC_DECIMALS)


def normalize_record(record: dict) -> dict:
    """A JSON-safe copy of ``record``: plain Python scalars, metrics rounded to 2 decimals,
    NaN / inf (here: any non-finite float, metric or not) as None.

    Raises ValueError naming the field if a metric is not a number.
    """
    out = _plain(record)
    if not isinstance(out, dict):
        raise ValueError(f'a result record must be a dict, got {type(record).__name__}')
    for key in METRIC_KEYS:
        if key in out:
            out[key] = _metric(out[key], key)
    for key in CLASS_METRIC_KEYS:
        if key in out:
            if not isinstance(out[key], dict):
                raise ValueError(f'result record {key} must map class -> value, '
                                 f'got {out[key]!r}')
            out[key] = {c: _metric(v, f'{key}[{c!r}]') for c, v in out[key].items()}
    return out


def check_record(record: dict) -> None:
    """Raise ValueError if ``record`` misses a schema key, has a bad round or a metric that is
    neither a number nor null."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f'result record misses keys {missing}: {record}')
    rnd = record['round']
    if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 1:
        raise ValueError(f'result record round must be an int >= 1, got {rnd!r}')
    for key in METRIC_KEYS:
        value = record[key]
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, float))):
            raise ValueError(f'result record {key} must be a number or null, got {value!r}')
    if not isinstance(record['IoU'], dict):
        raise ValueError(f'result record IoU must map class -> value, got {record["IoU"]!r}')


def is_adapted(record: dict) -> bool:
    """False for forgetting checks (a source set scored without updates)."""
    return bool(record.get('adapted', True))


def _dumps(record: dict) -> str:
    return json.dumps(record, allow_nan=False)


def _ends_torn(path: str) -> bool:
    """True if ``path`` is non-empty and its last byte is not a newline."""
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b'\n'


def append_record(work_dir: str, record: dict) -> dict:
    """Append one record to ``<work_dir>/results.jsonl`` and fsync it; returns the record as
    written (see :func:`normalize_record`).

    Raises ValueError (and writes nothing) for a record that breaks the schema, or when the
    file ends with a torn line (call :func:`drop_torn_tail` first).
    """
    record = normalize_record(record)
    check_record(record)
    line = _dumps(record) + '\n'
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, RESULTS_FILE)
    if osp.isfile(path) and _ends_torn(path):
        raise ValueError(f'{path} ends with an incomplete line (an interrupted write?); '
                         'resume the run (tools/test_tta.py --resume), which drops it, or call '
                         'drop_torn_tail() on the work dir before appending')
    try:
        with open(path, 'a', encoding='utf-8') as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:            # a cut line is dropped on --resume, which redoes its stage
        full = disk_full_error(e, path)
        if full is not None:
            raise full from e
        raise
    return record


def _parse(line: bytes) -> dict:
    """One record; a bare NaN / Infinity (written by older versions) reads as None."""
    record = json.loads(line.decode('utf-8'), parse_constant=lambda name: None)
    if not isinstance(record, dict):
        raise TypeError('not a JSON object')
    check_record(record)
    return record


def _read(path: str, torn_tail: str) -> tuple[list[dict], dict | None]:
    """Records of ``path`` and, with ``torn_tail='drop'``, the dropped torn last line."""
    if torn_tail not in TORN_TAIL_OPTIONS:
        raise ValueError(f'torn_tail must be one of {TORN_TAIL_OPTIONS}, got {torn_tail!r}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'no results file: {path}')
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records, dropped = [], None
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        lineno = index + 1
        try:
            records.append(_parse(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:   # unparsable: torn if last
            if index == last and torn_tail == 'drop':
                dropped = {'path': path, 'line': lineno,
                           'text': line.decode('utf-8', errors='replace')}
                continue
            hint = ('; if the run was interrupted, tools/test_tta.py --resume on its work '
                    'dir drops this incomplete last line and redoes its stage'
                    if index == last else '')
            raise ValueError(f'{path}, line {lineno}: corrupt result record ({e}){hint}') from e
        except (TypeError, ValueError) as e:
            raise ValueError(f'{path}, line {lineno}: corrupt result record ({e})') from e
    if dropped is not None:
        print_log(f'{path}, line {dropped["line"]}: dropped an incomplete last result record '
                  f'(an interrupted write): {dropped["text"][:80]!r}',
                  logger='current', level=logging.WARNING)
    return records, dropped


def load_records(work_dir_or_file: str, torn_tail: str = 'raise') -> list[dict]:
    """Read all records of a run (a work dir or a ``results.jsonl`` path).

    A line that is not a valid record raises ValueError naming the file and line. With
    ``torn_tail='drop'``, an unparsable *last* line (cut by a kill or power loss) is skipped
    with a logged warning instead; the file itself is not changed (see :func:`drop_torn_tail`).
    """
    return _read(results_path(work_dir_or_file), torn_tail)[0]


def _rewrite(path: str, records: Sequence[dict]) -> None:
    with atomic_write(path, 'w', encoding='utf-8') as f:
        f.writelines(_dumps(r) + '\n' for r in records)


def drop_torn_tail(work_dir: str) -> dict | None:
    """Repair a ``results.jsonl`` whose last line was cut by a kill or power loss.

    Drops ONLY an unparsable last line (logging a warning naming the file and line) and
    rewrites the file atomically, keeping its mode; a complete last record that merely lacks
    its newline is kept and the newline added. Returns ``{'path', 'line', 'text'}`` of the
    dropped line, or None when nothing was dropped (also when there is no file). A corrupt
    line elsewhere, or a last line that parses but is not a valid record, still raises
    ValueError naming the file and line, and the file is left as it is.

    For the engine: call this on resume, before :func:`truncate_records` and any append (or
    call ``truncate_records(..., torn_tail='drop')``). A dropped line is the record of a stage
    that was cut off before its state was saved: resume from the last saved state (its
    ``num_records`` does not count the dropped line) and rerun that stage, so the record is
    written again.
    """
    path = osp.join(work_dir, RESULTS_FILE)
    if not osp.isfile(path):
        return None
    records, dropped = _read(path, 'drop')
    if dropped is not None or _ends_torn(path):
        _rewrite(path, records)
    return dropped


def rewrite_records(work_dir: str, records: Sequence[dict]) -> None:
    """Atomically replace ``results.jsonl`` by ``records`` (keeping the file's mode)."""
    _rewrite(osp.join(work_dir, RESULTS_FILE), [normalize_record(r) for r in records])


def truncate_records(work_dir: str, keep: Callable[[dict], bool],
                     torn_tail: str = 'raise') -> None:
    """Atomically rewrite ``results.jsonl`` keeping only records where ``keep`` is true.

    The file keeps its mode. ``torn_tail='drop'`` also drops an incomplete last line (see
    :func:`drop_torn_tail`); no file: nothing to do.
    """
    path = osp.join(work_dir, RESULTS_FILE)
    if not osp.isfile(path):
        return
    records, _ = _read(path, torn_tail)
    _rewrite(path, [r for r in records if keep(r)])


def group_by_method(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Split records by their ``method`` field, in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r['method'], []).append(r)
    return groups


def load_runs(work_dirs: Sequence[str],
              names: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Load several runs keyed by method name; duplicates get the work dir name appended."""
    if names is not None and len(names) != len(work_dirs):
        raise ValueError(f'got {len(names)} names for {len(work_dirs)} work dirs')
    runs = []
    for i, work_dir in enumerate(work_dirs):
        path = osp.join(work_dir, RESULTS_FILE)
        if not osp.isfile(path):
            raise FileNotFoundError(f'work dir {work_dir} has no {RESULTS_FILE}')
        records = load_records(path)
        if not records:
            raise ValueError(f'work dir {work_dir}: {RESULTS_FILE} has no records')
        for method, recs in group_by_method(records).items():
            runs.append((names[i] if names else method, work_dir, recs))
    counts: dict[str, int] = {}
    for name, _, _ in runs:
        counts[name] = counts.get(name, 0) + 1
    out: dict[str, list[dict]] = {}
    for name, work_dir, recs in runs:
        key = name
        if counts[name] > 1:
            key = f'{name} ({osp.basename(osp.normpath(work_dir))})'
        base, n = key, 2
        while key in out:
            key, n = f'{base} #{n}', n + 1
        out[key] = recs
    return out
