"""The speed options (test_cfg.tf32, channels_last, compile), --amp, and pinned memory on CUDA."""
import copy
import importlib.util
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, build_runner, tiny_options
from fixture_data import make_acdc_tree
from mmengine.config import Config
from mmseg.registry import MODELS

from stag_seg.benchmark.fixtures import synthetic_batch
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import LOOP_DEFAULTS
from stag_seg.engine.launch import load_tta_config
from stag_seg.engine.speed import (
    apply_speed_options,
    check_speed_options,
    default_pin_memory,
    set_tf32,
    tf32_enabled,
)
from stag_seg.registry import TTA_METHODS

pytestmark = pytest.mark.filterwarnings('ignore:The draw is False:UserWarning')


@pytest.fixture(autouse=True)
def process_fp32():
    """TF32 is a process-wide torch flag: every test ends with the process's own setting."""
    yield
    set_tf32(False)


def _tiny_model():
    torch.manual_seed(0)
    return MODELS.build(Config.fromfile(TINY_CONFIG).model)


def _convs(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_defaults_are_off():
    assert (LOOP_DEFAULTS['tf32'], LOOP_DEFAULTS['channels_last'],
            LOOP_DEFAULTS['compile']) == (False, False, False)


@pytest.mark.parametrize('option, value, message', [
    ('tf32', 'yes', r"test_cfg: tf32 must be one of \(True, False\), got 'yes'"),
    ('channels_last', 1.5, r'test_cfg: channels_last must be one of'),
    ('compile', 'max', r"test_cfg.compile must be True, False or a dict .* got 'max'"),
    ('compile', dict(modee='max-autotune'),
     r"test_cfg.compile: unknown torch.compile option\(s\) \['modee'\]; valid options: .*mode"),
])
def test_bad_option_is_refused_before_the_runner(tmp_path, option, value, message):
    check = {**LOOP_DEFAULTS, option: value}
    with pytest.raises(ValueError, match=message):
        check_speed_options(check)
    root = make_acdc_tree(str(tmp_path / 'acdc'), conditions=('fog',))
    with pytest.raises(ValueError, match=message):
        load_tta_config(TINY_CONFIG, str(tmp_path / 'work'),
                        {**tiny_options(root), f'test_cfg.{option}': value})
    assert not (tmp_path / 'work').exists()


def test_tf32_flag_is_set_and_restored():
    before = (torch.backends.cuda.matmul.fp32_precision,
              torch.backends.cudnn.conv.fp32_precision)
    set_tf32(True)
    assert tf32_enabled()
    assert torch.backends.cuda.matmul.fp32_precision == 'tf32'
    assert torch.backends.cudnn.conv.fp32_precision == 'tf32'
    set_tf32(False)
    assert not tf32_enabled()
    assert (torch.backends.cuda.matmul.fp32_precision,
            torch.backends.cudnn.conv.fp32_precision) == before
    torch.get_float32_matmul_precision()          # the legacy API still answers (no mix error)


def test_channels_last_changes_the_layout_not_the_step():
    """Same TENT step with channels-last weights: the conv weights are NHWC, the state dict's
    keys and values unchanged, and the adapted parameters equal to float32 rounding."""
    model = _tiny_model()
    fast = copy.deepcopy(model)
    apply_speed_options(fast, {**LOOP_DEFAULTS, 'channels_last': True})
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(fast)
               if w.dim() == 4 and w.shape[-1] > 1)
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in _convs(model)
                   if w.shape[-1] > 1)
    batch = synthetic_batch((32, 64))
    results = []
    for m in (model, fast):
        adapter = TTAAdapter(m, TTA_METHODS.build(dict(type='tent')))
        results.append(adapter.step(batch, adapt=True))
    assert torch.equal(results[0].outputs[0].pred_sem_seg.data,
                       results[1].outputs[0].pred_sem_seg.data)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[key], value, rtol=1e-4, atol=1e-6)


def test_compile_compiles_the_backbone_in_place():
    """``compile`` (here with the eager backend: tracing without code generation) wraps the
    backbone's forward; the state dict keeps its keys; the step is the same."""
    model = _tiny_model()
    compiled = copy.deepcopy(model)
    torch._dynamo.reset()
    apply_speed_options(compiled, {**LOOP_DEFAULTS, 'compile': dict(backend='eager')})
    assert compiled.backbone._compiled_call_impl is not None
    assert model.backbone._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(model.state_dict())
    batch = synthetic_batch((32, 64))
    steps = []
    for m in (model, compiled):
        adapter = TTAAdapter(m, TTA_METHODS.build(dict(type='tent')))
        steps.append(adapter.step(batch, adapt=True))
    assert torch.equal(steps[0].outputs[0].pred_sem_seg.data,
                       steps[1].outputs[0].pred_sem_seg.data)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[key], value)
    torch._dynamo.reset()


def test_compile_needs_a_backbone():
    class Headless(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv2d(1, 1, 1)

    with pytest.raises(ValueError, match='test_cfg.compile: Headless has no backbone'):
        apply_speed_options(Headless(), {**LOOP_DEFAULTS, 'compile': True})


def test_the_loop_applies_the_options(tmp_path):
    root = make_acdc_tree(str(tmp_path / 'acdc'), conditions=('fog',), size=(128, 64))
    runner = build_runner(str(tmp_path / 'work'), root, num_rounds=1,
                          **{'test_cfg.domains': [dict(name='fog', dataset=dict(
                              condition='fog'))],
                             'test_cfg.channels_last': True, 'test_cfg.tf32': True})
    runner.test()
    convs = [w for w in _convs(runner.model) if w.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert tf32_enabled()


def test_pin_memory_defaults_to_true_on_cuda_only():
    def model_on(device):
        return SimpleNamespace(parameters=lambda: iter([SimpleNamespace(
            device=torch.device(device))]))

    cfg = dict(batch_size=1, num_workers=2)
    assert default_pin_memory(cfg, model_on('cuda')) == {**cfg, 'pin_memory': True}
    assert default_pin_memory(cfg, model_on('cpu')) == cfg
    assert default_pin_memory({**cfg, 'pin_memory': False},
                              model_on('cuda'))['pin_memory'] is False


def test_test_tta_amp_flag_sets_the_option():
    spec = importlib.util.spec_from_file_location('test_tta_tool',
                                                  osp.join(REPO, 'tools', 'test_tta.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.parse_args(['cfg.py', '--amp', 'bf16', '--cfg-options', 'test_cfg.num_rounds=2'])
    assert args.cfg_options == {'test_cfg.num_rounds': 2, 'test_cfg.amp': 'bf16'}
    assert tool.parse_args(['cfg.py']).cfg_options is None


def test_runner_start_up_formats_no_config_with_yapf(tmp_path, monkeypatch):
    """The Runner logs and dumps the config without yapf (load_tta_config asks for it), and
    the dumped copy loads back to the same config."""
    import mmengine.config.config as mmengine_config

    def refuse(*args, **kwargs):
        raise AssertionError('yapf was called')

    monkeypatch.setattr(mmengine_config, 'FormatCode', refuse)
    root = make_acdc_tree(str(tmp_path / 'acdc'))     # the stream's domains are checked
    runner = build_runner(str(tmp_path / 'work'), root)
    dumped = tmp_path / 'work' / osp.basename(TINY_CONFIG)
    assert not dumped.exists()                  # the loop dumps it once its start is checked
    runner.dump_checked_config()
    assert dumped.is_file()
    assert Config.fromfile(str(dumped)).to_dict() == runner.cfg.to_dict()
