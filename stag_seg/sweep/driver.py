"""Runs a sweep: plans its runs against their run dirs, launches the missing ones on a backend,
prints progress as runs finish, and writes the report (used by the stag-sweep command,
tools/sweep.py)."""
from __future__ import annotations

import json
import os
import os.path as osp
import shlex
import sys
from collections.abc import Callable

from stag_seg.engine.cli import command_line
from stag_seg.engine.run_dir import fingerprint_diff
from stag_seg.engine.work_dir import check_dir_option
from stag_seg.files import read_json, write_text_atomic
from stag_seg.reports.records import load_records
from stag_seg.sweep.aggregate import RunScores, run_scores
from stag_seg.sweep.backends import InfeasibleRuns, make_backend
from stag_seg.sweep.cli_options import to_cli
from stag_seg.sweep.report import progress_table, write_report
from stag_seg.sweep.spec import Run, SweepSpec, load_spec
from stag_seg.sweep.worker import LOG_FILE, RUN_FILE, run_state

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: what a run executes: the stag-tta command's module (or a script: a path ending in .py)
TEST_TTA = 'stag_seg.commands.test_tta'
SPEC_COPY = 'sweep_spec.py'


class SweepError(RuntimeError):
    """A sweep that cannot start (the message says why and what to do)."""


class SweepInterrupted(SweepError):
    """A sweep stopped by SIGINT / SIGTERM; finished runs are kept (the message says how to go
    on)."""


def sweep_command(args: list[str], program: str | None = None) -> str:
    """``args`` after the command the sweep was started with (``program``, default
    ``sys.argv[0]``): the clone's tools/sweep.py, ``stag-sweep``, or ``python -m``."""
    return command_line('sweep', 'stag-sweep', args, program)


def default_out_dir(spec: SweepSpec) -> str:
    return osp.join('work_dirs', 'sweeps', spec.name)


def payload(run: Run, out_dir: str, spec: SweepSpec, tool: str = TEST_TTA) -> dict:
    """What ``worker.execute_run`` needs for ``run``: argv, run dir, environment.

    The subprocess runs in the current directory with this checkout first on PYTHONPATH (so
    ``tool`` uses the same stag_seg as the sweep) and OMP_NUM_THREADS = the run's num_cpus;
    the spec's ``env`` overrides both.
    """
    work_dir = osp.join(out_dir, run.name)
    command = [tool] if tool.endswith('.py') else ['-m', tool]
    head = [sys.executable, *command, run.config, *([run.checkpoint] if run.checkpoint else []),
            '--work-dir', work_dir]
    pythonpath = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    env = {'PYTHONPATH': pythonpath,
           'OMP_NUM_THREADS': str(max(1, int(spec.resources.get('num_cpus', 1)))), **spec.env}
    return {'name': run.name, 'work_dir': work_dir, 'identity': run.identity(), 'head': head,
            'tail': ['--cfg-options', *to_cli(run.cfg_options)], 'cwd': os.getcwd(),
            'env': env, 'lock_timeout': 120.0}


def _cli_options(tail: list[str]) -> dict:
    """``--cfg-options ...`` argv as the stag-tta command parses it (``to_cli`` writes values
    that mmengine's DictAction and the command's CfgOptionsAction read alike)."""
    import argparse

    from mmengine.config import DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(tail).cfg_options or {}


def validate_runs(runs: list[Run], out_dir: str, spec: SweepSpec) -> None:
    """Check every run as the stag-tta command would before it starts: its config with its
    options (the engine's ``load_tta_config``), its source model and its start check
    (``check_start``: the checkpoint loaded strictly, the stream's data and subsets, the
    method's source sets; not the precision, which is the runs' device's); raise SweepError
    naming the count and the first bad run. Runs that differ only in their seed are checked
    once."""
    from stag_seg.engine.config import check_source
    from stag_seg.engine.launch import check_start, load_tta_config

    bad: list[tuple[str, str]] = []
    checked: dict[tuple, str | None] = {}
    for run in runs:
        p = payload(run, out_dir, spec)
        options = _cli_options(p['tail'])
        key = (run.config, run.checkpoint,
               tuple(sorted((k, repr(v)) for k, v in options.items() if k != 'randomness.seed')))
        if key not in checked:
            try:
                loaded = load_tta_config(run.config, p['work_dir'], options,
                                         checkpoint=run.checkpoint)
                check_source(loaded.setup.options)
                check_start(loaded, precision=False)
                checked[key] = None
            except Exception as e:       # anything test_tta.py would stop on
                checked[key] = str(e) or type(e).__name__
        if checked[key] is not None:
            bad.append((run.name, checked[key]))
    if bad:
        raise SweepError(f'{len(bad)} of {len(runs)} runs have an invalid config, nothing '
                         f'launched; first: {bad[0][0]}: {bad[0][1]}')


def check_run_identities(runs: list[Run], dirs: dict[str, str], out_dir: str) -> None:
    """Every run dir already launched holds this spec's run: the same identity (config,
    checkpoint, options, seed) in its ``sweep_run.json``; raise SweepError naming the count,
    the first run and its differing settings. A finished run of another spec would
    otherwise be counted, unlaunched, in this spec's report."""
    changed: list[tuple[str, list[str]]] = []
    for run in runs:
        known = read_json(osp.join(dirs[run.name], RUN_FILE))
        if known is None:
            continue
        identity = json.loads(json.dumps(run.identity()))
        old = known.get('identity') or {}
        if old != identity:
            changed.append((run.name, fingerprint_diff(old, identity)))
    if changed:
        name, keys = changed[0]
        raise SweepError(f'{len(changed)} run dir(s) in {out_dir} were launched with other '
                         f'settings than this spec (first: {name}: {", ".join(keys)} differ; '
                         f'see its {RUN_FILE}); nothing launched: delete them or choose '
                         'another --out')


def _scores(work_dir: str) -> RunScores:
    return run_scores(load_records(work_dir))


def collect_scores(spec: SweepSpec, out_dir: str) -> dict[str, RunScores]:
    """The scores of every finished run of ``spec`` under ``out_dir``."""
    dirs = {r.name: osp.join(out_dir, r.name) for r in spec.runs}
    return {name: _scores(d) for name, d in dirs.items() if run_state(d) == 'done'}


def _log_tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            tail = f.readlines()[-lines:]
    except OSError:
        return ''
    return ''.join('      | ' + line for line in tail).rstrip()


def _failure(result: dict) -> str:
    why = result.get('error') or f'exit status {result.get("returncode")}'
    return f'failed ({why}); log: {result["log"]}'


def _progress(result: dict, count: int, spec: SweepSpec, scores: dict, problems: dict,
              score: Callable[[str], None], echo: Callable[[str], None]) -> int:
    """Record and print one finished (or failed) run; returns the new count of finished."""
    name = result['name']
    if result['status'] == 'failed':
        problems[name] = _failure(result)
        echo(f'[{count}/{len(spec.runs)}] FAILED {name}: {problems[name]}')
        return count
    count += 1
    score(name)
    how = ' (resumed)' if result.get('resumed') else ''
    took = f' in {result["seconds"]} s' if 'seconds' in result else ''
    echo(f'[{count}/{len(spec.runs)}] {result["status"]} {name}{how}{took}')
    echo(progress_table(spec.runs, scores))
    return count


def run_sweep(spec_path: str,
              out_dir: str | None = None,
              backend: str = 'ray',
              address: str | None = None,
              resume: bool = False,
              num_cpus: int | None = None,
              num_gpus: int | None = None,
              dry_run: bool = False,
              report_only: bool = False,
              tool: str = TEST_TTA,
              echo: Callable[[str], None] = print) -> int:
    """Run (or continue, with ``resume``) a sweep; returns 0 if every run finished, else 1.

    Finished runs (with the sweep's completion marker) are never launched again; interrupted
    ones are relaunched with ``--resume``. ``dry_run`` lists the runs and their commands;
    ``report_only`` (re)writes the report from the finished runs.
    """
    spec = load_spec(spec_path)
    out_dir = osp.abspath(out_dir or default_out_dir(spec))
    dirs = {r.name: osp.join(out_dir, r.name) for r in spec.runs}
    try:
        check_dir_option(out_dir, '--out')
    except NotADirectoryError as e:
        raise SweepError(str(e)) from None
    check_run_identities(spec.runs, dirs, out_dir)
    states = {name: run_state(d) for name, d in dirs.items()}
    todo = [r for r in spec.runs if states[r.name] != 'done']
    counts = {s: sum(v == s for v in states.values()) for s in ('done', 'interrupted', 'new')}
    echo(f'sweep {spec.name}: {len(spec.runs)} runs in {out_dir}: {counts["done"]} finished, '
         f'{counts["interrupted"]} to resume, {counts["new"]} to start')

    if dry_run:
        for run in spec.runs:
            p = payload(run, out_dir, spec, tool)
            flag = ['--resume'] if states[run.name] == 'interrupted' else []
            echo(f'[{states[run.name]}] {run.name}\n    {shlex.join(p["head"] + flag + p["tail"])}')
        return 0
    launched = [n for n, d in dirs.items() if osp.isfile(osp.join(d, RUN_FILE))]
    if todo and launched and not resume and not report_only:
        raise SweepError(f'{out_dir} already holds {len(launched)} launched runs of this sweep '
                         f'({counts["done"]} finished); pass --resume to continue it (finished '
                         'runs are skipped, interrupted ones resumed) or choose another --out')

    scores: dict[str, RunScores] = {}
    problems: dict[str, str] = {}

    def score(name: str) -> None:
        try:
            scores[name] = _scores(dirs[name])
        except (FileNotFoundError, ValueError) as e:
            problems[name] = f'finished, but its results are unreadable: {e}'

    for run in spec.runs:
        if states[run.name] == 'done':
            score(run.name)
    if todo and not report_only:
        validate_runs(todo, out_dir, spec)
        os.makedirs(out_dir, exist_ok=True)
        with open(spec.path, encoding='utf-8') as f:
            write_text_atomic(osp.join(out_dir, SPEC_COPY), f.read())
        try:
            runner = make_backend(backend, spec.resources, address, num_cpus, num_gpus)
        except (ImportError, ValueError) as e:
            raise SweepError(str(e)) from e
        count = counts['done']
        results = runner.run([payload(r, out_dir, spec, tool) for r in todo])
        try:
            for result in results:
                count = _progress(result, count, spec, scores, problems, score, echo)
        except InfeasibleRuns as e:
            raise SweepError(f'{e}; nothing launched') from None
        except KeyboardInterrupt:
            results.close()                      # the backend stops its runs and Ray
            finished = sum(run_state(d) == 'done' for d in dirs.values())
            raise SweepInterrupted(
                f'interrupted: {finished} of {len(spec.runs)} runs finished, kept in {out_dir};'
                f' continue with: {sweep_command([spec_path, "--out", out_dir, "--resume"])}'
            ) from None


    unfinished = {r.name: problems.get(r.name, 'not run') for r in spec.runs
                  if r.name not in scores}
    paths = write_report(out_dir, spec, scores, unfinished)
    echo(f'report: {paths[0]} (also {", ".join(osp.basename(p) for p in paths[1:])})')
    if problems:
        echo(f'{len(problems)} of {len(spec.runs)} runs failed:')
        for name, why in problems.items():
            echo(f'  {name}: {why}')
            tail = _log_tail(osp.join(dirs[name], LOG_FILE))
            if tail:
                echo(tail)
        return 1
    return 0
