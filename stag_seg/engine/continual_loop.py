"""ContinualTTALoop: online test-time adaptation over a stream of domains, round after round."""
from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIMIZERS
from mmengine.runner import BaseLoop
from mmseg.registry import LOOPS

from stag_seg.datasets import check_label_ids
from stag_seg.engine.metrics import RunningIoU, find_iou_metric
from stag_seg.engine.predictions import prediction_path, save_prediction
from stag_seg.engine.progress import StageProgress
from stag_seg.engine.state import load_state, save_state
from stag_seg.engine.stream import Domain, MixedDataset, Stage, build_domain, plan_stages
from stag_seg.engine.tap import ModuleTap, get_submodule
from stag_seg.registry import TTA_METHODS
from stag_seg.reports import append_record, load_records, truncate_records, write_reports

RESETS = ('never', 'domain', 'round')


@LOOPS.register_module()
class ContinualTTALoop(BaseLoop):
    """Predicts each image, then adapts on it, over ``num_rounds`` passes of the stream.

    One forward pass per image: the scored prediction is the one made before that image's
    update (TENT/CoTTA protocol). Model and optimizer state carry over across domains and
    rounds unless ``reset`` says otherwise. Reports are written as each stage ends, with a
    checkpoint for ``resume``.

    Plug-in seam: after the forward, every hook's ``after_tta_forward(runner, batch_idx,
    data_batch, outputs, losses)`` is called with the base method's mutable ``losses`` dict;
    a plug-in adds its own term (e.g. ``losses['loss_stag']``) and the sum of all entries is
    back-propagated once.

    Args:
        runner: the mmengine Runner.
        dataloader: ``test_dataloader`` config; its ``dataset`` is the template each domain's
            dataset config is merged onto.
        evaluator: ``test_evaluator`` config (must include an IoUMetric); one per domain.
        domains: ``[dict(name='fog', dataset=dict(condition='fog')), ...]`` in stream order.
        num_rounds: passes over the stream.
        order: 'sequential' (domain after domain) or 'mixed' (all images interleaved in a
            seeded order per round, scored per domain).
        method: a ``TTA_METHODS`` config: 'source', 'tent' or 'tent-pl'.
        optimizer: an mmengine ``OPTIMIZERS`` config for the method's parameters.
        classifier: path of the module whose output logits feed the base loss.
        forgetting: optional ``dict(name=..., dataset=...)`` scored after each round without
            updating the model.
        reset: 'never', 'domain' or 'round': when to restore the initial model and optimizer.
        method_name: name in the reports; default: the method's type plus plug-in names.
        out_dir: if set, save every scored prediction under ``out_dir/round_<r>/<domain>/``.
        resume: continue from the work dir's last stage checkpoint.
        save_state: write that checkpoint at each stage end.
        progress: show a progress bar per stage.
    """

    def __init__(self,
                 runner,
                 dataloader: dict,
                 evaluator: dict | list,
                 domains: list[dict],
                 num_rounds: int = 10,
                 order: str = 'sequential',
                 method: dict | None = None,
                 optimizer: dict | None = None,
                 classifier: str = 'decode_head.conv_seg',
                 seed: int = 0,
                 forgetting: dict | None = None,
                 reset: str = 'never',
                 method_name: str | None = None,
                 out_dir: str | None = None,
                 resume: bool = False,
                 save_state: bool = True,
                 progress: bool = True) -> None:
        self._runner = runner
        self.dataloader_cfg = copy.deepcopy(dict(dataloader))
        self.evaluator_cfg = evaluator
        if not domains:
            raise ValueError('test_cfg.domains is empty: the stream needs at least one domain')
        if reset not in RESETS:
            raise ValueError(f'test_cfg.reset must be one of {RESETS}, got {reset!r}')
        self.domain_cfgs = list(domains)
        self.forgetting_cfg = forgetting
        self.num_rounds = num_rounds
        self.order = order
        self.method_cfg = dict(method or dict(type='tent'))
        self.method = TTA_METHODS.build(self.method_cfg)
        self.optimizer_cfg = dict(optimizer or dict(type='Adam', lr=6e-5 / 8, betas=(0.9, 0.999)))
        self.classifier = classifier
        self.seed = seed
        self.reset = reset
        self.method_name = method_name
        self.out_dir = out_dir
        self.resume = resume
        self.save_state = save_state
        self.progress = progress
        self.dataloader = None          # the loader of the stage in progress (for log hooks)
        self.optim_wrapper: OptimWrapper | None = None

    # ----------------------------------------------------------------- set-up
    @property
    def model(self) -> torch.nn.Module:
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def _build_stream(self) -> None:
        template = self.dataloader_cfg.get('dataset')
        self.domains: dict[str, Domain] = {}
        for cfg in self.domain_cfgs:
            domain = build_domain(cfg, template)
            if domain.name in self.domains:
                raise ValueError(f'test_cfg.domains: duplicate domain name {domain.name!r}')
            self.domains[domain.name] = domain
        forgetting = None
        if self.forgetting_cfg is not None:
            domain = build_domain(self.forgetting_cfg, template, adapt=False)
            self.domains[domain.name] = domain
            forgetting = domain.name
        adapted = [cfg['name'] for cfg in self.domain_cfgs]
        self.stages = plan_stages(adapted, self.num_rounds, self.order, forgetting)
        self.loaders = {name: self._loader(d.dataset) for name, d in self.domains.items()}
        if self.order == 'mixed':
            self.mixed = MixedDataset([self.domains[n] for n in adapted])
            self.loaders['mixed'] = self._loader(
                self.mixed, sampler=dict(type='SeededOrderSampler', seed=self.seed))
        self.evaluators, self.iou_metrics = {}, {}
        for name, domain in self.domains.items():
            evaluator = self.runner.build_evaluator(copy.deepcopy(self.evaluator_cfg))
            evaluator.dataset_meta = domain.dataset.metainfo
            self.evaluators[name] = evaluator
            self.iou_metrics[name] = find_iou_metric(evaluator)

    def _loader(self, dataset, sampler: dict | None = None):
        cfg = copy.deepcopy(self.dataloader_cfg)
        cfg['dataset'] = dataset
        if sampler is not None:
            cfg['sampler'] = sampler
        return self.runner.build_dataloader(cfg, seed=self.seed)

    def _build_optimizer(self) -> None:
        self.method.configure_model(self.model)
        params = self.method.collect_params(self.model)
        if self.method.updates and not params:
            raise ValueError(f'method {self.method_cfg["type"]!r} found no parameters to adapt')
        if self.method.updates:
            self.optim_wrapper = OptimWrapper(OPTIMIZERS.build({**self.optimizer_cfg,
                                                                'params': params}))
            self.params = params

    def _name(self) -> str:
        if self.method_name:
            return self.method_name
        plugins = [h.plugin_name for h in self.runner.hooks if getattr(h, 'plugin_name', None)]
        return '+'.join([self.method_cfg['type'], *plugins])

    def _state(self, snapshot: bool = False) -> dict:
        """Model and optimizer state; ``snapshot`` copies it (for a later reset)."""
        state = {'model': self.model.state_dict(),
                 'optimizer': self.optim_wrapper.state_dict() if self.optim_wrapper else None}
        return copy.deepcopy(state) if snapshot else state

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state['model'])
        if self.optim_wrapper is not None and state.get('optimizer') is not None:
            self.optim_wrapper.load_state_dict(state['optimizer'])

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        """Runs the whole stream; returns the overall and last-round mean mIoU."""
        work_dir = self.runner.work_dir
        self._build_stream()
        self._build_optimizer()
        self.tap = ModuleTap(get_submodule(self.model, self.classifier), keep_inputs=False)
        signature = [repr(s) for s in self.stages]
        initial = self._state(snapshot=True) if self.reset != 'never' else None
        start, self.num_records = 0, 0
        saved = load_state(work_dir, signature) if self.resume else None
        if saved is not None:
            self._restore(saved)
            start, self.num_records = saved['next_stage'], saved['num_records']
            self.runner.logger.info(f'Resuming the stream at stage {start + 1}/'
                                    f'{len(self.stages)} from {work_dir}')
        truncate_records(work_dir, _first(self.num_records))   # drop what the state lacks
        self.name = self._name()

        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        for index, stage in enumerate(self.stages):
            if index < start:
                continue
            new_round = index == 0 or self.stages[index - 1].round != stage.round
            if initial is not None and stage.adapt and (self.reset == 'domain' or new_round):
                self._restore(initial)
            for record in self._run_stage(stage):
                append_record(work_dir, record)
                self.num_records += 1
            write_reports(work_dir)
            if self.save_state:
                save_state(work_dir, {**self._state(), 'next_stage': index + 1,
                                      'num_records': self.num_records, 'stream': signature})
        metrics = _summary(load_records(work_dir))
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        self.tap.remove()
        return metrics

    def _run_stage(self, stage: Stage) -> list[dict]:
        mixed = len(stage.domains) > 1
        loader = self.loaders['mixed' if mixed else stage.domains[0]]
        if mixed:
            loader.sampler.set_epoch(stage.round)
        self.dataloader = loader
        running = {name: RunningIoU(self.iou_metrics[name])
                   for name in stage.domains}
        counts = dict.fromkeys(stage.domains, 0)
        skipped = dict.fromkeys(stage.domains, 0)
        label = f'round {stage.round}/{self.num_rounds} ' + (
            'mixed' if mixed else stage.domains[0]) + ('' if stage.adapt else ' (no update)')
        with StageProgress(label, len(loader.dataset), self.progress) as bar:
            for idx, data_batch in enumerate(_guarded(loader, label)):
                names = (self._mixed_names(loader, idx, len(data_batch['inputs'])) if mixed
                         else [stage.domains[0]] * len(data_batch['inputs']))
                outputs, updated = self.run_iter(idx, data_batch, stage.adapt)
                for sample, name in zip(outputs, names, strict=False):
                    self._score(sample, name, stage.round)
                    counts[name] += 1
                    skipped[name] += int(stage.adapt and not updated)
                    running[name].update()
                bar.advance(running[names[-1]].miou(), len(outputs))
                self.runner.call_hook('after_test_iter', batch_idx=idx, data_batch=data_batch,
                                      outputs=outputs)
        return [self._record(stage, name, counts[name], skipped[name], running[name])
                for name in stage.domains]

    def _mixed_names(self, loader, idx: int, size: int) -> list[str]:
        start = idx * loader.batch_size
        return [self.mixed.domain_of(i) for i in loader.sampler.order[start:start + size]]

    def run_iter(self, idx: int, data_batch: dict, adapt: bool) -> tuple[list, bool]:
        """Predicts one batch and, if ``adapt``, updates on it. Returns (outputs, updated)."""
        self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
        updating = adapt and self.optim_wrapper is not None
        updated = False
        with torch.set_grad_enabled(updating):
            outputs = self.runner.model.test_step(data_batch)
            if updating:
                losses = self.method.loss(self.tap.logits())
                self.runner.call_hook('after_tta_forward', batch_idx=idx, data_batch=data_batch,
                                      outputs=outputs, losses=losses)
                updated = self._update(losses)
        self.tap.clear()
        for sample in outputs:              # the full-resolution logits are not needed
            if 'seg_logits' in sample:
                del sample.seg_logits
        return outputs, updated

    def _update(self, losses: dict) -> bool:
        """One optimizer step on the sum of ``losses``; skipped if the loss or a gradient is
        not finite, leaving the model and optimizer as they were."""
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            return False
        self.optim_wrapper.backward(loss)
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            self.optim_wrapper.zero_grad()
            return False
        self.optim_wrapper.step()
        self.optim_wrapper.zero_grad()
        return True

    def _score(self, sample, name: str, round_idx: int) -> None:
        dataset = self.domains[name].dataset
        metric = self.iou_metrics[name]
        if 'gt_sem_seg' in sample:
            check_label_ids(sample.gt_sem_seg.data, len(dataset.metainfo['classes']),
                            metric.ignore_index, sample.get('seg_map_path', sample.img_path))
        self.evaluators[name].process(data_samples=[sample])
        if self.out_dir:
            save_prediction(sample, prediction_path(self.out_dir, round_idx, name,
                                                    sample.img_path, dataset))

    def _record(self, stage: Stage, name: str, num_images: int, skipped: int,
                running: RunningIoU) -> dict:
        classes = self.domains[name].dataset.metainfo['classes']
        class_iou = running.class_iou()
        metrics = self.evaluators[name].evaluate(max(num_images, 1))
        record = {
            'method': self.name, 'round': stage.round, 'domain': name,
            'num_images': num_images,
            'mIoU': metrics['mIoU'], 'mAcc': metrics['mAcc'], 'aAcc': metrics['aAcc'],
            'IoU': {c: (round(float(v), 2) if np.isfinite(v) else None)
                    for c, v in zip(classes, class_iou, strict=False)},
            'skipped_updates': skipped,
        }
        if not stage.adapt:
            record['adapted'] = False
        self.runner.logger.info(
            f"{self.name} round {stage.round} {name}: mIoU {record['mIoU']:.2f} "
            f'({num_images} images, {skipped} skipped updates)')
        return record


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


def _first(n: int):
    """A predicate keeping the first ``n`` records."""
    seen = iter(range(n))
    return lambda record: next(seen, None) is not None


def _summary(records: list[dict]) -> dict:
    adapted = [r for r in records if r.get('adapted', True)]
    if not adapted:
        return {}
    last = max(r['round'] for r in adapted)
    return {'mIoU': round(float(np.mean([r['mIoU'] for r in adapted])), 2),
            'last_round_mIoU': round(float(np.mean(
                [r['mIoU'] for r in adapted if r['round'] == last])), 2),
            'skipped_updates': int(sum(r['skipped_updates'] for r in adapted))}

