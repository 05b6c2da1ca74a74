"""The front door of a stream run: load and validate a config once, build its Runner, run it
(what tools/test_tta.py, the demo and the benchmark call)."""
from __future__ import annotations

import contextlib
import copy
import os.path as osp
from dataclasses import dataclass

import torch
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

from stag_seg.compat.checkpoint import load_segmentor_checkpoint, unlogged_trust
from stag_seg.engine.config import TTASetup, check_source, validate_tta_config
from stag_seg.engine.runner import StreamRunner
from stag_seg.engine.stream import build_source_domain, build_stream_domains
from stag_seg.engine.work_dir import (
    check_dir_option,
    checked_resume_state,
    finished_run,
    locked_work_dir,
    marked_complete,
)
from stag_seg.resources import resolve_config
from stag_seg.step.optim import check_precision


@dataclass
class TTARun:
    """A loaded stream config (``cfg``, with the command line's overrides) and its validated
    setup (options, method, plug-ins: built once). It runs once: the method and the plug-ins
    carry the run's state."""

    cfg: Config
    setup: TTASetup
    started: bool = False

    @property
    def work_dir(self) -> str:
        return self.cfg.work_dir

    def set_source(self, checkpoint: str | None = None,
                   random_init: bool | None = None) -> None:
        """Sets ``test_cfg.checkpoint`` (which must be a file) and ``test_cfg.random_init``
        (a checkpoint given here turns the config's ``random_init`` off; both given here
        are refused); a start already checked (:func:`check_start`) is checked again."""
        if checkpoint and random_init:
            raise ValueError(f'checkpoint {checkpoint} and --random-init exclude each other: '
                             'the source model is the checkpoint or random initialisation; '
                             'drop one of the two')
        if checkpoint:
            if osp.isdir(checkpoint):
                raise IsADirectoryError(f'checkpoint {checkpoint} is a directory; pass the '
                                        'checkpoint file (.pth)')
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
            self.cfg.test_cfg.checkpoint = self.setup.options['checkpoint'] = checkpoint
            if random_init is None:
                random_init = False
        if random_init is not None:
            self.cfg.test_cfg.random_init = self.setup.options['random_init'] = random_init
        if checkpoint or random_init is not None:
            self.setup.domains = None

    def refuse_rerun(self) -> None:
        """A RuntimeError if this loaded config has run already."""
        if self.started:
            raise RuntimeError(f'{self.work_dir}: this loaded config has run already (its '
                               "method and plug-ins carry that run's state); load the config "
                               'again')


def load_tta_config(config: str,
                    work_dir: str | None = None,
                    cfg_options: dict | None = None,
                    resume: bool = False,
                    out_dir: str | None = None,
                    checkpoint: str | None = None,
                    random_init: bool | None = None) -> TTARun:
    """The config with the command line's overrides applied, validated as a whole, once.

    Every option (loop, method, optimizer, plug-ins) is validated here and the method and
    plug-ins are built, before a Runner exists, so a bad option never touches the work dir.
    ``checkpoint`` and ``random_init`` set ``test_cfg.checkpoint`` / ``test_cfg.random_init``
    (:func:`run_tta` can still set them, and requires one of the two); ``randomness.seed``
    defaults to 0.
    """
    config = resolve_config(config)   # a path, stag_seg::<path> or a shipped config's name
    cfg = Config.fromfile(config)
    # no yapf: the Runner formats the config three times (log, work dir, visualizer) for text
    # nobody reads formatted (fromfile ignores format_python_code for plain configs)
    cfg = Config(cfg.to_dict(), cfg_text=cfg.text, filename=cfg.filename,
                 env_variables=cfg.env_variables, format_python_code=False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('test_cfg', {}).get('type') != 'ContinualTTALoop':
        raise ValueError(f'{config}: test_cfg.type must be ContinualTTALoop '
                         f"(got {cfg.get('test_cfg', {}).get('type')!r}); inherit "
                         'configs/_base_/datasets/acdc_continual.py or define a stream')
    cfg.work_dir = (work_dir or cfg.get('work_dir')
                    or osp.join('work_dirs', osp.splitext(osp.basename(config))[0]))
    cfg.test_cfg.resume = resume
    if out_dir:
        cfg.test_cfg.out_dir = out_dir
    if cfg.get('randomness', {}).get('seed') is None:
        cfg.randomness = {**cfg.get('randomness', {}), 'seed': 0}
    seed = cfg.randomness.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ValueError(f'randomness.seed must be an integer from 0 to 2**32 - 1 (it seeds '
                         f'torch, numpy and random), got {seed!r}')
    cfg.load_from = None          # the loop loads (and checks) test_cfg.checkpoint itself
    cfg.launcher = 'none'
    run = TTARun(cfg, validate_tta_config(cfg, require_checkpoint=False))
    run.set_source(checkpoint, random_init)
    return run


def check_start(run: TTARun, precision: bool = True) -> None:
    """What the loop would otherwise find only after the Runner has written its log, config
    and timestamp folder to the work dir: the precision on the device the Runner will use
    (for a method that updates; ``precision=False``: not, for a sweep's driver, which may
    not have the runs' device), the checkpoint loaded strictly into a CPU copy of the
    model, the stream's domains built (data present, ``test_cfg.subset`` within each
    domain; the loop then uses these), the source-domain sets the method reads
    (``TTAMethod.source_datasets``: EATA's ``fisher_dataset``) and, with ``--resume``, the
    saved state against this config. Every error is one line naming the option, the file
    or the path."""
    opt, cfg = run.setup.options, run.cfg
    run.setup.domains = None            # set last: only a start that passed every check
    if precision and run.setup.method.updates:
        check_precision(opt['amp'], opt['optim_wrapper'], torch.device(get_device()))
    scope = cfg.get('default_scope')
    with (DefaultScope.overwrite_default_scope(scope) if scope
          else contextlib.nullcontext()):
        if opt['checkpoint']:
            with unlogged_trust():          # the loop's load logs it, into the run's log
                load_segmentor_checkpoint(MODELS.build(copy.deepcopy(cfg.model)),
                                          opt['checkpoint'], logger='silent')
        template = cfg.test_dataloader.get('dataset')
        domains = build_stream_domains(list(cfg.test_cfg.get('domains') or []), template,
                                       opt['subset'], opt['forgetting'], cfg.randomness.seed)
        for option, dataset in run.setup.method.source_datasets().items():
            try:            # as the loop's build_loader resolves it
                build_source_domain(dataset, template)
            except (FileNotFoundError, ValueError) as e:
                raise type(e)(f'test_cfg.method.{option}: {e}') from e
    checked_resume_state(cfg)
    run.setup.domains = domains


def build_runner(run: TTARun, checkpoint: str | None = None,
                 random_init: bool | None = None, verbose: bool = True) -> StreamRunner:
    """The Runner of ``run`` (after setting its source model, see :meth:`TTARun.set_source`).

    ``verbose=False`` keeps the console to warnings and progress (the log file gets all).
    """
    run.set_source(checkpoint, random_init)
    check_source(run.setup.options)
    run.refuse_rerun()
    if run.setup.domains is None:           # not checked yet (run_tta checks before the lock)
        check_start(run)
    if not verbose:
        run.cfg.console_log_level = 'WARNING'
    run.started = True
    return StreamRunner.from_setup(run.cfg, run.setup)


def run_tta(run: TTARun, checkpoint: str | None = None, random_init: bool | None = None,
            verbose: bool = True) -> dict:
    """Runs the stream; returns the loop's summary metrics. Reports land in the work dir.

    The start is checked (:func:`check_start`) before the work dir is locked for the run (a
    second run on it is refused, naming the holder) and the Runner writes its logs there, so
    a failed start leaves even the lock file as it was; ``--resume`` of a complete run only
    reads the work dir (its state checked against the config before the lock; it needs
    neither its data nor the start check) and takes its lock.
    """
    run.set_source(checkpoint, random_init)
    check_source(run.setup.options)
    run.refuse_rerun()
    check_dir_option(run.cfg.test_cfg.get('out_dir'), '--out')
    check_dir_option(run.cfg.test_cfg.get('show_dir'), '--show-dir')
    if not (run.cfg.test_cfg.get('resume') and marked_complete(run.work_dir)):
        check_start(run)
    else:                               # a finished run: its state against this config
        checked_resume_state(run.cfg)
    with locked_work_dir(run.work_dir):
        done = finished_run(run.cfg)
        return done if done is not None else build_runner(run, verbose=verbose).test()
