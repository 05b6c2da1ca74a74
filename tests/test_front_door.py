"""The front door and the package's structure: a run validates its config once and builds
its method and plug-ins once; the import graph has no cycle and keeps its layers; a failed
start leaves a finished run as it was; a failed run says so in run.json."""
import ast
import json
import logging
import os
import os.path as osp
import shutil
import time

import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, snapshot, tiny_options
from fixture_data import make_acdc_tree
from mmengine.logging import print_log
from mmengine.runner import save_checkpoint
from mmseg.registry import HOOKS, MODELS

from stag_seg.engine import config as engine_config
from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.engine.work_dir import LOCK_FILE
from stag_seg.files import hold_lock, release_lock
from stag_seg.methods import Tent
from stag_seg.plugins import TTAPlugin
from stag_seg.registry import TTA_METHODS

PACKAGE = osp.join(REPO, 'stag_seg')
#: the experiment tooling: it may import the core, never the other way round
TOOLING = ('stag_seg.benchmark', 'stag_seg.sweep', 'stag_seg.demo')
#: the console commands: the top, above the core and the tooling (they import both)
COMMANDS = ('stag_seg.commands',)
ONE_DOMAIN = {'test_cfg.domains': [dict(name='fog', dataset=dict(condition='fog'))],
              'test_cfg.num_rounds': 1}
BUILT = {'method': 0, 'plugin': 0}


@TTA_METHODS.register_module(name='test-counted-tent', force=True)
class CountedTent(Tent):
    def __init__(self) -> None:
        BUILT['method'] += 1


@HOOKS.register_module(force=True)
class CountedPlugin(TTAPlugin):
    name = 'counted'

    def __init__(self, loss_weight: float = 0.0) -> None:
        super().__init__(loss_weight)
        BUILT['plugin'] += 1

    def losses(self, ctx) -> dict:
        return {'loss_counted': ctx.logits.sum() * self.loss_weight}


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), conditions=('fog',))


def test_config_is_validated_once_and_method_and_plugins_built_once(tmp_path, acdc,
                                                                    monkeypatch):
    checks = []
    check = engine_config.check_loop_options
    monkeypatch.setattr(engine_config, 'check_loop_options',
                        lambda *a, **k: checks.append(1) or check(*a, **k))
    BUILT.update(method=0, plugin=0)
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'), tiny_options(acdc, **ONE_DOMAIN, **{
        'test_cfg.method': dict(type='test-counted-tent'),
        'custom_hooks': [dict(type='CountedPlugin')]}))
    run_tta(run)
    assert len(checks) == 1 and BUILT == {'method': 1, 'plugin': 1}
    assert run.setup.plugins[0].name == 'counted'
    with pytest.raises(RuntimeError, match='has run already'):
        run_tta(run)


def _imports() -> dict[str, set[str]]:
    """Module -> the stag_seg modules it imports (anywhere in the file, TYPE_CHECKING
    included), with the packages whose ``__init__`` such an import runs (not the root's, and
    not the importer's own packages)."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                module = osp.relpath(path, REPO)[:-3].replace(os.sep, '.')
                modules[module.removesuffix('.__init__')] = path
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(open(path).read())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in modules
                         else node.module for a in node.names]
            for name in (n for n in names if n.startswith('stag_seg.')):
                parts = name.split('.')
                for i in range(2, len(parts) + 1):
                    target = '.'.join(parts[:i])
                    inside = (module + '.').startswith(target + '.')
                    if target in modules and (target == name or not inside):
                        targets.add(target)
        targets.discard(module)
        graph[module] = targets
    return graph


def test_import_graph_has_no_cycle():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError(f'import cycle: {" -> ".join(cycle)}')
            if not state.get(target):
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])


def test_import_graph_keeps_its_layers():
    graph = _imports()

    def under(module, packages):
        return any(module == p or module.startswith(p + '.') for p in packages)

    bad = []
    for module, targets in graph.items():
        for target in targets:
            if (module != 'stag_seg' and not under(module, TOOLING + COMMANDS)
                    and under(target, TOOLING)):
                bad.append(f'core {module} imports tooling {target}')
            if (under(module, ('stag_seg.methods', 'stag_seg.plugins', 'stag_seg.step'))
                    and under(target, ('stag_seg.engine',))):
                bad.append(f'{module} imports the engine ({target})')
            if (under(module, ('stag_seg.step', 'stag_seg.ops'))
                    and under(target, ('stag_seg.methods', 'stag_seg.plugins'))):
                bad.append(f'{module} imports {target} (the step is below them)')
    assert not bad, bad


@pytest.fixture(scope='module')
def ten_class_checkpoint(tmp_path_factory) -> str:
    """A checkpoint of the tiny model with 10 classes (the config has 19)."""
    cfg = load_tta_config(TINY_CONFIG, str(tmp_path_factory.mktemp('unused')),
                          tiny_options('x')).cfg
    cfg.model.decode_head.num_classes = 10
    path = str(tmp_path_factory.mktemp('ckpt') / 'ten_classes.pth')
    save_checkpoint({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, path)
    return path


@pytest.mark.parametrize('failure', ['fp16 on CPU', 'mis-shaped checkpoint', 'missing data',
                                     'subset larger than the domain'])
def test_failed_start_leaves_a_finished_run_as_it_was(tmp_path, acdc, ten_class_checkpoint,
                                                      failure):
    if failure == 'fp16 on CPU' and torch.cuda.is_available():
        pytest.skip('needs a machine without CUDA')
    work_dir = str(tmp_path / 'w')
    run_tta(load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc, **ONE_DOMAIN)))
    before = snapshot(work_dir)
    assert json.loads(before['run.json'][0])['status'] == 'complete'
    print_log('a later message of this process', logger='current', level=logging.WARNING)
    assert osp.basename(TINY_CONFIG) in before and any(k.endswith('.log') for k in before)
    options, checkpoint = tiny_options(acdc, **ONE_DOMAIN), None
    if failure == 'fp16 on CPU':
        options['test_cfg.amp'], named = 'fp16', "test_cfg.amp='fp16' needs a CUDA device"
    elif failure == 'mis-shaped checkpoint':
        options['test_cfg.random_init'] = False
        checkpoint = named = ten_class_checkpoint
    elif failure == 'missing data':
        named = str(tmp_path / 'nowhere')
        options['test_dataloader.dataset.data_root'] = named
    else:
        options['test_cfg.subset'] = 10 ** 6
        named = "test_cfg.subset=1000000: domain 'fog' has 4 images"
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        run_tta(load_tta_config(TINY_CONFIG, work_dir, options), checkpoint)
    message = str(error.value)
    assert named in message and '\n' not in message, message
    # no new timestamp folder, no previous/, the lock file not even taken (another process
    # would write its pid there)
    assert snapshot(work_dir) == before
    release_lock(hold_lock(osp.join(work_dir, LOCK_FILE)))    # the lock was released


def test_resume_of_a_finished_run_reads_only_and_needs_no_data(tmp_path, acdc):
    """The start check comes before the lock, but not for ``--resume`` of a complete run,
    which only reads the work dir: its data may be gone."""
    work_dir, data = str(tmp_path / 'w'), str(tmp_path / 'acdc')
    shutil.copytree(acdc, data)
    options = tiny_options(data, **ONE_DOMAIN)
    summary = run_tta(load_tta_config(TINY_CONFIG, work_dir, options))
    before = snapshot(work_dir)
    shutil.rmtree(data)
    assert run_tta(load_tta_config(TINY_CONFIG, work_dir, options, resume=True)) == summary
    assert snapshot(work_dir, skip=('run.lock',)) == {
        k: v for k, v in before.items() if k != 'run.lock'}


def test_runs_of_a_config_in_the_same_second_each_write_their_own_log(tmp_path, acdc,
                                                                       monkeypatch):
    strftime = time.strftime
    monkeypatch.setattr(time, 'strftime', lambda fmt, *t: '20200101_000000'
                        if fmt == '%Y%m%d_%H%M%S' else strftime(fmt, *t))
    for name in ('a', 'b'):
        run_tta(load_tta_config(TINY_CONFIG, str(tmp_path / name),
                                tiny_options(acdc, **ONE_DOMAIN)))
    for name in ('a', 'b'):
        log = tmp_path / name / '20200101_000000' / '20200101_000000.log'
        assert log.read_text().count('RANDOM INITIALISATION') == 1, name


def test_failed_run_says_failed_in_run_json(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    options = tiny_options(acdc, **ONE_DOMAIN,
                           custom_hooks=[dict(type='CrashAfterItersHook', iters=2)])
    with pytest.raises(KeyboardInterrupt):
        run_tta(load_tta_config(TINY_CONFIG, work_dir, options))
    info = json.load(open(osp.join(work_dir, 'run.json')))
    assert info['status'] == 'failed'
    assert info['error'] == 'KeyboardInterrupt: killed by test'
