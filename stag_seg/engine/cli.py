"""What stag-tta (tools/test_tta.py) does with its arguments: run, print the table, errors."""
from __future__ import annotations

import argparse
import logging
import os.path as osp
import shlex
import sys
import traceback
import warnings

#: third-party warnings that say nothing about a stream run (shown with --verbose)
NOISE = (
    r'Fail to import ``MultiScaleDeformableAttention``',
    r'``build_loss`` would be deprecated',
    r'Default ``avg_non_ignore`` is False',
    r'The draw is False',
    r'.*instance named of visualizer has been created',
    r'"FileClient" will be deprecated',
    r'.*torch\.jit\.',
)


def quiet_warnings() -> None:
    for pattern in NOISE:
        warnings.filterwarnings('ignore', message=pattern)
    logging.getLogger('py.warnings').setLevel(logging.ERROR)


def command_line(tool: str, console: str, args: list[str], program: str | None = None) -> str:
    """``args`` after the command that started this process (``program``, default
    ``sys.argv[0]``) as the user can type it again: the clone's ``tools/<tool>.py``, the
    ``console`` command (e.g. ``stag-tta``), or ``python -m stag_seg.commands.<tool>``."""
    program = osp.normpath(sys.argv[0] if program is None else program)
    if program.split(osp.sep)[-2:] == ['tools', f'{tool}.py']:
        head = ['python', f'tools/{tool}.py']
    elif osp.basename(program) == console:
        head = [console]
    else:
        head = ['python', '-m', f'stag_seg.commands.{tool}']
    return shlex.join([*head, *args])


def resume_command(argv: list[str], program: str | None = None) -> str:
    """The command line that continues this run: the same command and arguments, and
    ``--resume``."""
    resume = [] if '--resume' in argv else ['--resume']
    return command_line('test_tta', 'stag-tta', [*argv, *resume], program)


def run_cli(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Runs the stream; prints the results table. Returns the exit code (errors: 1; Ctrl-C:
    130, with the command that resumes)."""
    try:
        import stag_seg  # noqa: F401  (compat patches and registration)
        from stag_seg.engine.launch import load_tta_config, run_tta
        from stag_seg.reports import RESULTS_FILE, format_table, load_records

        run = load_tta_config(args.config, args.work_dir, args.cfg_options, args.resume,
                              args.out, args.checkpoint, args.random_init or None)
        if getattr(args, 'trust_checkpoint', False) and run.cfg.test_cfg.get('checkpoint'):
            from stag_seg.compat.checkpoint import trust_checkpoint
            trust_checkpoint(run.cfg.test_cfg.checkpoint)
        run_tta(run, verbose=args.verbose)
    except KeyboardInterrupt:
        argv = sys.argv[1:] if argv is None else argv
        print(f'test_tta: interrupted; resume with: {resume_command(argv)}', file=sys.stderr)
        return 130
    except Exception as e:                  # one line; --verbose for the traceback
        if args.verbose:
            traceback.print_exc()
        expected = isinstance(e, (ValueError, FileNotFoundError, RuntimeError, OSError))
        detail = str(e) if expected else f'{type(e).__name__}: {e} (--verbose: traceback)'
        print(f'test_tta: error: {detail}', file=sys.stderr)
        return 1
    results = osp.join(run.work_dir, RESULTS_FILE)
    if osp.isfile(results):
        print(f'\n{format_table(load_records(results))}\n\nreports: {run.work_dir}')
    return 0
