"""NVlabs / HuggingFace SegFormer checkpoints convert into our model and give NVlabs' logits.

A small MiT (dims 8/16/32/64) with synthetic weights under NVlabs' and HuggingFace's key names;
the reference forward below is written from NVlabs' definitions (mix_transformer.py and
segformer_head.py of NVlabs/SegFormer) and runs directly on the NVlabs-named state dict.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from stag_seg.models.segformer_convert import (
    DEFAULT_CONFIG,
    ConversionError,
    build_model,
    check_against_model,
    convert_checkpoint,
    convert_state_dict,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIMS, DEPTHS, HEADS, SR_RATIOS = (8, 16, 32, 64), (1, 2, 1, 1), (1, 2, 4, 8), (8, 4, 2, 1)
EMBED, CLASSES, NV_CHANNELS, MLP_RATIO = 16, 19, 12, 4
SMALL = dict(model=dict(
    backbone=dict(embed_dims=DIMS[0], num_layers=list(DEPTHS), num_heads=list(HEADS)),
    decode_head=dict(in_channels=list(DIMS), channels=EMBED)))
IMAGE = (1, 3, 64, 96)                 # stage maps 16x24 ... 2x3; sr keeps 2x3 tokens
ATOL = 2e-4


# --- synthetic NVlabs checkpoint -----------------------------------------------------------

def nvlabs_shapes(dims=DIMS, depths=DEPTHS, sr_ratios=SR_RATIOS, embed=EMBED,
                  classes=CLASSES, nv_channels=NV_CHANNELS):
    """(key, shape) of every tensor of an NVlabs SegFormer checkpoint, in NVlabs' order."""
    in_ch = 3
    for s, (dim, depth, sr) in enumerate(zip(dims, depths, sr_ratios, strict=True), start=1):
        k = 7 if s == 1 else 3
        yield from [(f'backbone.patch_embed{s}.proj.weight', (dim, in_ch, k, k)),
                    (f'backbone.patch_embed{s}.proj.bias', (dim, )),
                    (f'backbone.patch_embed{s}.norm.weight', (dim, )),
                    (f'backbone.patch_embed{s}.norm.bias', (dim, ))]
        hidden = dim * MLP_RATIO
        for j in range(depth):
            parts = [('norm1', (dim, )), ('attn.q', (dim, dim)), ('attn.kv', (2 * dim, dim)),
                     ('attn.proj', (dim, dim))]
            if sr > 1:
                parts += [('attn.sr', (dim, dim, sr, sr)), ('attn.norm', (dim, ))]
            parts += [('norm2', (dim, )), ('mlp.fc1', (hidden, dim)),
                      ('mlp.dwconv.dwconv', (hidden, 1, 3, 3)), ('mlp.fc2', (dim, hidden))]
            for name, shape in parts:
                yield f'backbone.block{s}.{j}.{name}.weight', shape
                yield f'backbone.block{s}.{j}.{name}.bias', shape[:1]
        yield from [(f'backbone.norm{s}.weight', (dim, )), (f'backbone.norm{s}.bias', (dim, ))]
        in_ch = dim
    for i, dim in enumerate(dims, start=1):
        yield from [(f'decode_head.linear_c{i}.proj.weight', (embed, dim)),
                    (f'decode_head.linear_c{i}.proj.bias', (embed, ))]
    yield 'decode_head.linear_fuse.conv.weight', (embed, 4 * embed, 1, 1)
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        yield f'decode_head.linear_fuse.bn.{name}', (embed, )
    yield 'decode_head.linear_fuse.bn.num_batches_tracked', ()
    yield from [('decode_head.linear_pred.weight', (classes, embed, 1, 1)),
                ('decode_head.linear_pred.bias', (classes, )),
                ('decode_head.conv_seg.weight', (classes, nv_channels, 1, 1)),  # unused
                ('decode_head.conv_seg.bias', (classes, ))]


def _scale(key: str) -> tuple[float, float]:
    """(std, mean) of a synthetic tensor. Chosen so every LayerNorm eps matters: the
    patch-embedding and spatial-reduction norms see variances near 1e-5, the blocks' first
    norms (fed by patch-embedding norms with small weights) near 1e-6."""
    if '.patch_embed' in key:
        return {'proj.weight': (4e-4, 0.0), 'proj.bias': (1e-3, 0.0),
                'norm.weight': (5e-4, 1e-3), 'norm.bias': (2e-4, 0.0)}[key.split('.', 2)[2]]
    if '.attn.sr.' in key:
        return (1e-4, 0.0) if key.endswith('weight') else (1e-3, 0.0)
    if key.endswith('.bias'):
        return 0.1, 0.0
    if 'norm' in key or '.bn.' in key:
        return 0.1, 1.0
    return 0.3, 0.0


def nvlabs_state_dict(seed: int = 0) -> OrderedDict:
    """Synthetic weights of the small model under NVlabs' key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for key, shape in nvlabs_shapes():
        if key.endswith('num_batches_tracked'):
            sd[key] = torch.tensor(160000)
        elif key.endswith('running_var'):
            sd[key] = torch.rand(*shape, generator=g) + 0.5
        else:
            std, mean = _scale(key)
            sd[key] = torch.randn(*shape, generator=g) * std + mean
    return sd


def huggingface_state_dict(nv: OrderedDict) -> OrderedDict:
    """The same weights under HuggingFace's names, per transformers' conversion script."""
    hf = OrderedDict()
    for key, value in nv.items():
        if key.startswith('decode_head.conv_seg.'):
            continue
        new = key.replace('backbone.', 'segformer.encoder.')
        for s in range(1, 5):
            new = new.replace(f'patch_embed{s}.norm.', f'patch_embeddings.{s - 1}.layer_norm.')
            new = new.replace(f'patch_embed{s}.proj.', f'patch_embeddings.{s - 1}.proj.')
            new = new.replace(f'encoder.norm{s}.', f'encoder.layer_norm.{s - 1}.')
            new = new.replace(f'block{s}.', f'block.{s - 1}.')
            new = new.replace(f'linear_c{s}.', f'linear_c.{s - 1}.')
        for old, hf_name in (('.norm1.', '.layer_norm_1.'), ('.norm2.', '.layer_norm_2.'),
                             ('.attn.q.', '.attention.self.query.'),
                             ('.attn.proj.', '.attention.output.dense.'),
                             ('.attn.sr.', '.attention.self.sr.'),
                             ('.attn.norm.', '.attention.self.layer_norm.'),
                             ('.mlp.fc1.', '.mlp.dense1.'), ('.mlp.fc2.', '.mlp.dense2.'),
                             ('linear_fuse.conv.', 'linear_fuse.'),
                             ('linear_fuse.bn.', 'batch_norm.'),
                             ('linear_pred.', 'classifier.')):
            new = new.replace(old, hf_name)
        if '.attn.kv.' in new:
            dim = value.shape[0] // 2
            hf[new.replace('.attn.kv.', '.attention.self.key.')] = value[:dim]
            hf[new.replace('.attn.kv.', '.attention.self.value.')] = value[dim:]
        else:
            hf[new] = value
    return hf


# --- reference forward from NVlabs' definitions ------------------------------------------

def _ln(x, sd, p, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f'{p}.weight'], sd[f'{p}.bias'], eps)


def _linear(x, sd, p):
    return F.linear(x, sd[f'{p}.weight'], sd[f'{p}.bias'])


def _attention(x, h, w, sd, p, heads, sr, sr_eps):
    b, n, c = x.shape
    q = _linear(x, sd, f'{p}.q').reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
    x_ = x
    if sr > 1:
        x_ = x.permute(0, 2, 1).reshape(b, c, h, w)
        x_ = F.conv2d(x_, sd[f'{p}.sr.weight'], sd[f'{p}.sr.bias'], stride=sr)
        x_ = _ln(x_.reshape(b, c, -1).permute(0, 2, 1), sd, f'{p}.norm', sr_eps)
    kv = _linear(x_, sd, f'{p}.kv').reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]
    attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
    return _linear((attn @ v).transpose(1, 2).reshape(b, n, c), sd, f'{p}.proj')


def _mix_ffn(x, h, w, sd, p):
    x = _linear(x, sd, f'{p}.fc1')
    b, n, c = x.shape
    x = x.transpose(1, 2).reshape(b, c, h, w)
    x = F.conv2d(x, sd[f'{p}.dwconv.dwconv.weight'], sd[f'{p}.dwconv.dwconv.bias'], padding=1,
                 groups=c)
    return _linear(F.gelu(x.flatten(2).transpose(1, 2)), sd, f'{p}.fc2')


def reference_backbone(img, sd, patch_eps=1e-5, sr_eps=1e-5, block_eps=1e-6):
    outs, x = [], img
    for s, (depth, heads, sr) in enumerate(zip(DEPTHS, HEADS, SR_RATIOS, strict=True), start=1):
        weight = sd[f'backbone.patch_embed{s}.proj.weight']
        x = F.conv2d(x, weight, sd[f'backbone.patch_embed{s}.proj.bias'],
                     stride=4 if s == 1 else 2, padding=weight.shape[-1] // 2)
        b, _, h, w = x.shape
        x = _ln(x.flatten(2).transpose(1, 2), sd, f'backbone.patch_embed{s}.norm', patch_eps)
        for j in range(depth):
            p = f'backbone.block{s}.{j}'
            x = x + _attention(_ln(x, sd, f'{p}.norm1', block_eps), h, w, sd, f'{p}.attn',
                               heads, sr, sr_eps)
            x = x + _mix_ffn(_ln(x, sd, f'{p}.norm2', block_eps), h, w, sd, f'{p}.mlp')
        x = _ln(x, sd, f'backbone.norm{s}', block_eps)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        outs.append(x)
    return outs


def reference_head(feats, sd, order=(3, 2, 1, 0)):
    c1 = feats[0]
    embedded = []
    for i, c in enumerate(feats, start=1):
        n, _, h, w = c.shape
        e = _linear(c.flatten(2).transpose(1, 2), sd, f'decode_head.linear_c{i}.proj')
        e = e.permute(0, 2, 1).reshape(n, -1, h, w)
        if i > 1:
            e = F.interpolate(e, size=c1.shape[2:], mode='bilinear', align_corners=False)
        embedded.append(e)
    x = F.conv2d(torch.cat([embedded[i] for i in order], dim=1),
                 sd['decode_head.linear_fuse.conv.weight'])
    bn = 'decode_head.linear_fuse.bn'
    x = F.relu(F.batch_norm(x, sd[f'{bn}.running_mean'], sd[f'{bn}.running_var'],
                            sd[f'{bn}.weight'], sd[f'{bn}.bias'], training=False, eps=1e-5))
    return F.conv2d(x, sd['decode_head.linear_pred.weight'], sd['decode_head.linear_pred.bias'])


def reference_logits(img, sd, order=(3, 2, 1, 0), **eps):
    return reference_head(reference_backbone(img, sd, **eps), sd, order)


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small_config():
    cfg = Config.fromfile(DEFAULT_CONFIG)
    cfg.merge_from_dict(SMALL)
    return cfg


@pytest.fixture(scope='module')
def nvlabs():
    return nvlabs_state_dict()


@pytest.fixture(scope='module')
def image():
    return torch.rand(*IMAGE, generator=torch.Generator().manual_seed(1)) * 4 - 2


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


def _loaded_model(config, path):
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    model = build_model(config).eval()
    result = model.load_state_dict(checkpoint['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model, checkpoint


# --- tests ---------------------------------------------------------------------------------

def test_the_nvlabs_config_uses_the_nvlabs_head_and_norm_eps():
    cfg = Config.fromfile(DEFAULT_CONFIG)
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    assert backbone.type == 'NVMixVisionTransformer' and backbone.init_cfg is None
    assert (backbone.patch_norm_eps, backbone.sr_norm_eps) == (1e-5, 1e-5)
    assert backbone.num_layers == [3, 6, 40, 3] and backbone.sr_ratios == [8, 4, 2, 1]
    assert head.type == 'NVSegFormerHead' and head.channels == 768 and head.num_classes == 19
    assert head.norm_cfg.type == 'BN' and cfg.model.test_cfg == dict(mode='whole')


def test_nvlabs_b5_layout_matches_the_b5_config_key_for_key():
    """segformer.b5.1024x1024.city.160k.pth's layout (1070 keys) fits the shipped config."""
    b5 = OrderedDict((k, torch.empty(shape)) for k, shape in nvlabs_shapes(
        dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), embed=768, nv_channels=128))
    assert (len(b5), sum(k.startswith('backbone.') for k in b5)) == (1070, 1052)
    converted = convert_state_dict(b5)
    assert sum(k.startswith('backbone.') for k in converted.state_dict) == 948
    model = build_model(DEFAULT_CONFIG)
    check_against_model(converted, model.state_dict())
    eps = [m.eps for m in model.backbone.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert (eps.count(1e-5), eps.count(1e-6)) == (4 + 49, 2 * 52 + 4)


def test_small_model_sets_nvlabs_eps_on_the_right_norms(small_config):
    model = build_model(small_config)
    eps = {name: m.eps for name, m in model.backbone.named_modules()
           if isinstance(m, torch.nn.LayerNorm)}
    assert eps['layers.0.0.norm'] == 1e-5 and eps['layers.3.0.norm'] == 1e-5   # patch embed
    assert eps['layers.1.1.1.attn.norm'] == 1e-5                              # spatial reduction
    assert eps['layers.1.1.1.norm1'] == 1e-6 and eps['layers.3.2'] == 1e-6     # block, stage end
    assert sum(e == 1e-5 for e in eps.values()) == 4 + sum(DEPTHS[:3])


def test_cli_converts_nvlabs_and_logits_match_the_nvlabs_reference(
        tmp_path, small_config, nvlabs, image):
    src = _save({'meta': {'CLASSES': ('road', ), 'iter': 160000}, 'state_dict': nvlabs},
                tmp_path / 'segformer.small.city.pth')
    config = tmp_path / 'small.py'
    config.write_text(f'_base_ = {DEFAULT_CONFIG!r}\n'
                      f'model = {SMALL["model"]!r}\n')
    dst = tmp_path / 'out' / 'converted.pth'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'convert_segformer_checkpoint.py'), src,
         str(dst), '--config', str(config)],
        capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'nvlabs' in proc.stdout and not list((tmp_path / 'out').glob('*.tmp*'))
    assert proc.stderr == ''                   # no third-party warnings on a conversion

    model, checkpoint = _loaded_model(small_config, dst)
    meta = checkpoint['meta']
    assert meta['source_format'] == 'nvlabs' and meta['source'] == src
    assert meta['converter'] == 'stag_seg.models.segformer_convert'
    n_backbone = sum(k.startswith('backbone.') for k in nvlabs) - 2 * sum(DEPTHS)  # q+kv
    assert meta['num_keys'] == n_backbone + 16      # head: 8 linear_c, conv, 5 bn, conv_seg
    assert torch.equal(checkpoint['state_dict']['decode_head.conv_seg.weight'],
                       nvlabs['decode_head.linear_pred.weight'])

    with torch.no_grad():
        logits = model(image, mode='tensor')
        expected = reference_logits(image, nvlabs)
    assert logits.shape == (1, CLASSES, 16, 24)
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize('variant', [
    dict(order=(0, 1, 2, 3)),                                  # concat c1..c4
    dict(patch_eps=1e-6, sr_eps=1e-6),                         # mmseg's single eps
    dict(patch_eps=1e-6),
    dict(sr_eps=1e-6),
    dict(block_eps=1e-5),
], ids=['concat-c1-first', 'all-eps-1e-6', 'patch-eps-1e-6', 'sr-eps-1e-6', 'block-eps-1e-5'])
def test_the_reference_comparison_would_catch(variant, nvlabs, image):
    """Each near-miss of the NVlabs definition moves the logits far beyond the tolerance."""
    with torch.no_grad():
        right = reference_logits(image, nvlabs)
        wrong = reference_logits(image, nvlabs, **variant)
    assert (right - wrong).abs().max() > 20 * ATOL


def test_huggingface_weights_convert_to_the_same_state_dict(nvlabs):
    from_nvlabs = convert_state_dict(nvlabs)
    from_hf = convert_state_dict(huggingface_state_dict(nvlabs))
    assert (from_nvlabs.source_format, from_hf.source_format) == ('nvlabs', 'huggingface')
    assert list(from_hf.state_dict) == list(from_nvlabs.state_dict)
    for key, value in from_nvlabs.state_dict.items():
        assert torch.equal(from_hf.state_dict[key], value), key
    assert from_hf.origin['backbone.layers.1.1.0.attn.attn.in_proj_weight'] == [
        'segformer.encoder.block.1.0.attention.self.query.weight',
        'segformer.encoder.block.1.0.attention.self.key.weight',
        'segformer.encoder.block.1.0.attention.self.value.weight']


def test_huggingface_bin_converts_and_loads(tmp_path, small_config, nvlabs, image):
    hf = huggingface_state_dict(nvlabs)
    src = _save(hf, tmp_path / 'pytorch_model.bin')
    meta = convert_checkpoint(src, str(tmp_path / 'hf.pth'), small_config)
    assert meta['source_format'] == 'huggingface'
    model, _ = _loaded_model(small_config, tmp_path / 'hf.pth')
    with torch.no_grad():
        torch.testing.assert_close(model(image, mode='tensor'), reference_logits(image, nvlabs),
                                   atol=ATOL, rtol=1e-4)


def test_huggingface_safetensors_converts(tmp_path, small_config, nvlabs):
    safetensors = pytest.importorskip('safetensors.torch')
    hf = {k: v.contiguous() for k, v in huggingface_state_dict(nvlabs).items()}
    safetensors.save_file(hf, str(tmp_path / 'model.safetensors'))
    meta = convert_checkpoint(str(tmp_path / 'model.safetensors'), str(tmp_path / 'st.pth'),
                              small_config)
    assert meta['source_format'] == 'huggingface'
    _loaded_model(small_config, tmp_path / 'st.pth')


def _convert_error(tmp_path, small_config, state_dict) -> str:
    src = _save({'state_dict': state_dict}, tmp_path / 'bad.pth')
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(src, str(tmp_path / 'bad_out.pth'), small_config)
    assert not (tmp_path / 'bad_out.pth').exists()
    message = str(info.value)
    assert 'bad.pth' in message
    return message


def test_wrong_shapes_are_errors_naming_the_key(tmp_path, small_config, nvlabs):
    bad = OrderedDict(nvlabs)
    bad['decode_head.linear_c2.proj.weight'] = torch.zeros(EMBED, DIMS[1] + 1)
    bad['backbone.block2.1.mlp.fc1.weight'] = torch.zeros(DIMS[1] * MLP_RATIO + 1, DIMS[1])
    message = _convert_error(tmp_path, small_config, bad)
    assert 'wrong shapes' in message
    assert 'decode_head.linear_c2.proj.weight: (16, 17) in the checkpoint, (16, 16)' in message
    assert '(from backbone.block2.1.mlp.fc1.weight)' in message


def test_unknown_keys_are_errors_naming_the_key(tmp_path, small_config, nvlabs):
    bad = OrderedDict(nvlabs)
    bad['backbone.block1.0.attn.extra.weight'] = torch.zeros(3)
    bad['decode_head.aux.weight'] = torch.zeros(3)
    message = _convert_error(tmp_path, small_config, bad)
    assert 'unknown keys' in message and 'decode_head.aux.weight' in message
    assert '(from backbone.block1.0.attn.extra.weight)' in message
    with pytest.raises(ConversionError, match='auxiliary_head.conv.weight'):
        convert_state_dict({**nvlabs, 'auxiliary_head.conv.weight': torch.zeros(3)})
    hf = huggingface_state_dict(nvlabs)
    hf['segformer.encoder.block.0.0.attention.self.gate.weight'] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r'self\.gate\.weight'):
        convert_state_dict(hf)


def test_missing_keys_are_errors_naming_the_key(tmp_path, small_config, nvlabs):
    bad = OrderedDict(nvlabs)
    del bad['backbone.norm3.weight'], bad['decode_head.linear_fuse.bn.running_var']
    message = _convert_error(tmp_path, small_config, bad)
    assert 'missing keys' in message
    assert 'backbone.layers.2.2.weight' in message                  # mmseg's name of norm3
    assert 'decode_head.linear_fuse.bn.running_var' in message
    no_kv = OrderedDict((k, v) for k, v in nvlabs.items() if k != 'backbone.block3.0.attn.kv.bias')
    with pytest.raises(ConversionError, match=r'missing key: backbone\.block3\.0\.attn\.kv\.bias'):
        convert_state_dict(no_kv)
    hf = huggingface_state_dict(nvlabs)
    del hf['segformer.encoder.block.2.0.attention.self.value.weight']
    with pytest.raises(ConversionError, match=r'block\.2\.0\.attention\.self\.value\.weight'):
        convert_state_dict(hf)


def test_a_file_of_neither_format_is_an_error(tmp_path, small_config):
    message = _convert_error(tmp_path, small_config, {'encoder.weight': torch.zeros(2)})
    assert 'neither an NVlabs' in message and 'encoder.weight' in message


def test_cli_reports_a_bad_file_in_one_line(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'convert_tool', osp.join(REPO, 'tools', 'convert_segformer_checkpoint.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = _save({'state_dict': {'encoder.weight': torch.zeros(2)}}, tmp_path / 'other.pth')
    with pytest.raises(SystemExit, match=r'convert_segformer_checkpoint: .*other\.pth: neither'):
        tool.main([src, str(tmp_path / 'out.pth')])
    with pytest.raises(SystemExit, match='not found: .*missing.pth'):
        tool.main([str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()


def test_cli_reports_bad_inputs_and_outputs_in_one_line(tmp_path):
    import importlib.util

    from test_compat import save_payload
    spec = importlib.util.spec_from_file_location(
        'convert_tool', osp.join(REPO, 'tools', 'convert_segformer_checkpoint.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    good = _save({'state_dict': {'encoder.weight': torch.zeros(2)}}, tmp_path / 'other.pth')
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint\n')
    marker = tmp_path / 'payload_ran'
    evil = save_payload(tmp_path / 'evil.pth', marker)
    readonly = tmp_path / 'readonly'
    readonly.mkdir()
    readonly.chmod(0o555)
    if os.access(readonly, os.W_OK):     # root writes anywhere: a folder nobody can write to
        readonly = '/proc'
    out = str(tmp_path / 'out.pth')
    cases = [([str(text), out], rf'{text}: not a PyTorch checkpoint \(torch.load: Unsupported'),
             ([str(tmp_path), out], rf'{tmp_path} is a directory, not a checkpoint file'),
             ([good, str(tmp_path)], rf'{tmp_path} is a directory; give the converted'),
             ([good, f'{readonly}/out.pth'], rf'{readonly}/out.pth: cannot write to {readonly}'),
             ([evil, out], rf'{evil}: refused: not plain weights .*pass --trust-checkpoint$')]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as info:
            tool.main(argv)
        message = str(info.value.code)
        assert '\n' not in message, message
        assert re.match(f'convert_segformer_checkpoint: {expected}', message), message
    assert not marker.exists() and not osp.exists(out)
