"""Per-(round, domain) result records, stored one JSON line each in ``results.jsonl``."""
from __future__ import annotations

import json
import os
import os.path as osp
import tempfile
from collections.abc import Callable, Sequence

RESULTS_FILE = 'results.jsonl'
REQUIRED_KEYS = ('method', 'round', 'domain', 'num_images', 'mIoU', 'mAcc', 'aAcc', 'IoU',
                 'skipped_updates')


def results_path(work_dir_or_file: str) -> str:
    """Path of ``results.jsonl`` for a work dir (a file path is returned unchanged)."""
    if osp.isdir(work_dir_or_file):
        return osp.join(work_dir_or_file, RESULTS_FILE)
    return work_dir_or_file


def check_record(record: dict) -> None:
    """Raise ValueError if ``record`` misses a schema key or has a bad round."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f'result record misses keys {missing}: {record}')
    if not isinstance(record['round'], int) or record['round'] < 1:
        raise ValueError(f'result record round must be an int >= 1, got {record["round"]!r}')


def is_adapted(record: dict) -> bool:
    """False for forgetting checks (a source set scored without updates)."""
    return bool(record.get('adapted', True))


def append_record(work_dir: str, record: dict) -> None:
    """Append one record to ``<work_dir>/results.jsonl`` and fsync it."""
    check_record(record)
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, RESULTS_FILE), 'a', encoding='utf-8') as f:
        f.write(json.dumps(record) + '\n')
        f.flush()
        os.fsync(f.fileno())


def load_records(work_dir_or_file: str) -> list[dict]:
    """Read all records of a run (a work dir or a ``results.jsonl`` path)."""
    path = results_path(work_dir_or_file)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no results file: {path}')
    records = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError('not a JSON object')
                check_record(record)
            except (TypeError, ValueError) as e:
                raise ValueError(f'{path}, line {lineno}: corrupt result record ({e})') from e
            records.append(record)
    return records


def truncate_records(work_dir: str, keep: Callable[[dict], bool]) -> None:
    """Atomically rewrite ``results.jsonl`` keeping only records where ``keep`` is true."""
    path = osp.join(work_dir, RESULTS_FILE)
    if not osp.isfile(path):
        return
    kept = [r for r in load_records(path) if keep(r)]
    fd, tmp = tempfile.mkstemp(prefix='.results.', suffix='.tmp', dir=work_dir)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.writelines(json.dumps(r) + '\n' for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


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
