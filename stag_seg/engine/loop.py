"""ContinualTTALoop: streams the domains through the adapter, round after round."""
from __future__ import annotations

import copy
from collections.abc import Iterator

import mmengine
import mmseg
import numpy as np
import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmseg.registry import LOOPS

from stag_seg.compat.checkpoint import load_segmentor_checkpoint
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import run_fingerprint
from stag_seg.engine.progress import StageProgress
from stag_seg.engine.rng_state import get_rng_state, set_rng_state
from stag_seg.engine.run_dir import RunDir, archive_rounds, with_checkpoint_identity
from stag_seg.engine.scorer import DomainScorer, build_iou_metric
from stag_seg.engine.speed import apply_speed_options, default_pin_memory, resolve_fast
from stag_seg.engine.stream import (
    DOMAIN_KEY,
    MixedDataset,
    Stage,
    build_source_domain,
    build_stream_domains,
    plan_stages,
)
from stag_seg.reports import load_records, run_summary
from stag_seg.step.timing import phase


@LOOPS.register_module()
class ContinualTTALoop(BaseLoop):
    """Predicts each image, then adapts on it, over ``num_rounds`` passes of the stream.

    The loop only streams: it builds the domains and their loaders, hands each batch to the
    :class:`~stag_seg.engine.adapter.TTAAdapter` (which runs the method and the plug-ins),
    gives the predictions to each domain's scorer, and at each stage end writes the records,
    the reports and the resume state. Options are documented in the README ("The stream, in
    the config"); the loop takes them, the method and the plug-ins from the runner's setup
    (``runner.tta``: validated and built once by :mod:`stag_seg.engine.launch`).
    """

    def __init__(self, runner, dataloader: dict, evaluator: dict | list, domains: list[dict],
                 **options) -> None:
        self._runner = runner
        self.dataloader_cfg = copy.deepcopy(dict(dataloader))
        self.evaluator_cfg = evaluator
        self.domain_cfgs = list(domains)
        self.opt = runner.tta.options
        self.dataloader = None          # the loader of the stage in progress (for log hooks)

    @property
    def model(self) -> torch.nn.Module:
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def run(self) -> dict:
        """Runs (or resumes) the whole stream; returns the overall and last-round mean mIoU."""
        opt, logger = self.opt, self.runner.logger
        if opt['checkpoint']:
            load_segmentor_checkpoint(self.model, opt['checkpoint'])
            logger.info(f"Loaded checkpoint {opt['checkpoint']}")
        else:
            logger.warning('Running from RANDOM INITIALISATION (no checkpoint, --random-init)')
        opt = resolve_fast(opt, next(self.model.parameters()).device, logger)
        apply_speed_options(self.model, opt, logger)
        self._build_stream()
        run_dir = RunDir(self.runner.work_dir, logger)
        self.fingerprint = with_checkpoint_identity(
            run_fingerprint(self.runner.cfg, self.runner.seed), opt['checkpoint'])
        saved = (run_dir.load_resume_state(self.fingerprint, len(self.stages), opt['checkpoint'])
                 if opt['resume'] else None)
        if saved is not None and saved['next_stage'] == len(self.stages):
            logger.warning(f'{self.runner.work_dir}: the run is already complete; nothing to do')
            return run_summary(load_records(self.runner.work_dir))
        plugins = self.runner.tta.plugins
        self.adapter = TTAAdapter(
            self.model, self.runner.tta.method, opt['classifier'], plugins,
            opt['optimizer'], opt['optim_wrapper'], opt['amp'], logger, self.build_loader,
            cuda_graph=opt['cuda_graph'])
        self.name = opt['method_name'] or '+'.join([opt['method']['type'],
                                                    *[p.name for p in plugins]])
        try:
            return self._stream(run_dir, saved)
        except BaseException as e:
            run_dir.failed(e)
            raise
        finally:
            self.adapter.close()

    def _stream(self, run_dir: RunDir, saved: dict | None) -> dict:
        """The stages from the start or from a saved state; the summary metrics."""
        self.runner.dump_checked_config()
        initial = self.adapter.snapshot() if self.opt['reset'] != 'never' else None
        start = 0
        if saved is not None:
            self.adapter.load_state_dict(saved['adapter'])
            set_rng_state(saved['rng'])
            run_dir.keep_records(saved['num_records'])
            start = saved['next_stage']
            self.runner.logger.info(f'Resuming at stage {start + 1}/{len(self.stages)}')
        else:
            run_dir.archive_previous()
            for folder in (self.opt['out_dir'], self.opt['show_dir']):
                archive_rounds(folder, self.runner.logger)
        run_dir.start(self._run_info(start))
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        for index in range(start, len(self.stages)):
            stage = self.stages[index]
            first_of_round = index == 0 or self.stages[index - 1].round != stage.round
            if initial is not None and stage.adapt and (self.opt['reset'] == 'domain'
                                                        or first_of_round):
                self.adapter.load_state_dict(initial)
            if stage.adapt and self.opt['optimizer_reset'] == 'domain':
                self.adapter.reset_optimizer()
            records = self._run_stage(stage)
            state = self._state() if self.opt['save_state'] else None
            run_dir.stage_done(records, state, index + 1)
        metrics = run_summary(load_records(self.runner.work_dir))
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    def _build_stream(self) -> None:
        opt, seed = self.opt, self.runner.seed
        forgetting = opt['forgetting']
        domains = self.runner.tta.domains       # built by the front door's start check
        if domains is None:
            domains = build_stream_domains(self.domain_cfgs, self.dataloader_cfg.get('dataset'),
                                           opt['subset'], forgetting, seed)
        self.domains = {d.name: d for d in domains}
        adapted = [d.name for d in domains if d.adapt]
        self.stages = plan_stages(adapted, opt['num_rounds'], opt['order'],
                                  forgetting and forgetting['name'],
                                  forgetting.get('every', 1) if forgetting else 1)
        self.loaders = {d.name: self._loader(d.dataset, self._sampler(i, d))
                        for i, d in enumerate(domains)}
        if opt['order'] == 'mixed':
            mixed = MixedDataset([self.domains[n] for n in adapted])
            self.loaders['mixed'] = self._loader(
                mixed, sampler=dict(type='SeededOrderSampler', seed=seed))
        self.scorers = {d.name: DomainScorer(d.name, d.dataset.dataset,
                                             build_iou_metric(self.evaluator_cfg, d.dataset),
                                             opt['out_dir'], opt['show_dir'],
                                             opt['show_interval']) for d in domains}

    def _sampler(self, index: int, domain) -> dict | None:
        """A domain's order: the dataset's, a seeded shuffle, or a Dirichlet label shift."""
        if not domain.adapt:
            return None
        if self.opt['order'] == 'dirichlet':
            return dict(type='DirichletOrderSampler', seed=self.runner.seed, stream=index,
                        **self.opt['dirichlet'])
        if self.opt['shuffle']:
            return dict(type='SeededOrderSampler', seed=self.runner.seed, stream=index)
        return None

    def build_loader(self, dataset_cfg: dict, size: int | None = None):
        """A loader over a source-domain set (e.g. EATA's Fisher set): a dataset config
        resolved like a stream domain's, labels not required, and, if ``size``, a seeded
        subset of ``size`` images (``randomness.seed``)."""
        domain = build_source_domain(dataset_cfg, self.dataloader_cfg.get('dataset'))
        if size is not None and size < len(domain.dataset):
            domain.dataset.take_subset(size, np.random.default_rng([self.runner.seed, 1 << 21]))
        return self._loader(domain.dataset)

    def _loader(self, dataset, sampler: dict | None = None):
        cfg = default_pin_memory(copy.deepcopy(self.dataloader_cfg), self.model)
        cfg['dataset'] = dataset
        if sampler is not None:
            cfg['sampler'] = sampler
        return self.runner.build_dataloader(cfg, seed=self.runner.seed)

    def _run_info(self, start: int) -> dict:
        """run.json: what ran, from which weights, and how far it got."""
        return {
            'method': self.name, 'config': self.runner.cfg.filename,
            'checkpoint': self.opt['checkpoint'], 'random_init': not self.opt['checkpoint'],
            'seed': self.runner.seed, 'num_stages': len(self.stages), 'stages_done': start,
            'versions': {'torch': torch.__version__, 'mmseg': mmseg.__version__,
                         'mmengine': mmengine.__version__, 'numpy': np.__version__}}

    def _state(self) -> dict:
        return {'adapter': self.adapter.state_dict(), 'rng': get_rng_state(),
                'fingerprint': self.fingerprint, 'num_stages': len(self.stages)}

    def _run_stage(self, stage: Stage) -> list[dict]:
        mixed = len(stage.domains) > 1
        loader = self.loaders['mixed' if mixed else stage.domains[0]]
        if hasattr(loader.sampler, 'set_epoch'):
            loader.sampler.set_epoch(stage.round)
        self.dataloader = loader
        scorers = {name: self.scorers[name] for name in stage.domains}
        for scorer in scorers.values():
            scorer.start()
        label = (f'round {stage.round}/{self.opt["num_rounds"]} '
                 + ('mixed' if mixed else stage.domains[0])
                 + ('' if stage.adapt else ' (no update)'))
        with StageProgress(label, len(loader.dataset), self.opt['progress']) as bar:
            for idx, batch in enumerate(_guarded(loader, label)):
                self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=batch)
                result = self.adapter.step(batch, stage.adapt)
                names = [sample.metainfo[DOMAIN_KEY] for sample in result.outputs]
                with phase('scoring'):
                    for sample, name in zip(result.outputs, names, strict=True):
                        scorers[name].add(sample, stage.round, result.attempted,
                                          result.updated)
                if result.stats and len(set(names)) > 1:
                    raise RuntimeError(
                        f'{self.name}: a batch of several domains ({sorted(set(names))}) '
                        'reports per-batch counters that cannot be split between them; use '
                        "batch_size=1 (the protocol) or order='sequential'")
                scorers[names[0]].add_stats(result.stats)
                bar.advance(len(names), scorers[names[-1]].metric.running_miou)
                self.runner.call_hook('after_tta_step', stage=stage, result=result)
                self.runner.call_hook('after_test_iter', batch_idx=idx, data_batch=batch,
                                      outputs=result.outputs)
        records = [scorers[name].record(self.name, stage.round, stage.adapt)
                   for name in stage.domains]
        for r in records:
            self.runner.logger.info(f"{self.name} {label}: {r['domain']} mIoU {r['mIoU']} "
                                    f"({r['num_images']} images, {r['skipped_updates']} "
                                    'skipped updates)')
        self.runner.call_hook('after_tta_stage', stage=stage, records=records)
        return records


def _guarded(loader, label: str) -> Iterator[dict]:
    """Iterates ``loader``; a failure to load an image names the stage (the cause names the
    file)."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            raise RuntimeError(f'{label}: could not load an image: {e}') from e
        yield batch
