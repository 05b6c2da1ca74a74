# The STAG study, phase 1 (docs/study.md): TENT vs TENT+STAG settings over the regimes the
# STAG abstract names, on the offline demo stream, 3 stream seeds each.
#   python tools/make_demo_data.py          # the demo data (once)
#   python tools/sweep.py configs/sweeps/study_stag.py --out work_dirs/sweeps/study_stag
#
# Every run: the demo source model, 10 rounds of fog -> night -> rain -> snow, a seeded half
# (25 of 50) of each condition's images in a seeded order per round (the seed picks the
# images and their order, so seeds are independent streams), clean val scored once, after
# the last round (forgetting). Regimes: Adam lr 1e-4 (the demo's), lr 1e-3 (10x), mixed
# conditions (lr 1e-4), Dirichlet label shift gamma=0.1 inside each condition (lr 1e-4).
# STAG settings: both gradient spaces x lambda in {0.5, 1, 2} x conf_thresh in {None, 0.9},
# and in classifier space the features' gradient path on and off (feature_grad); tau=1.
# Each is paired with TENT on the same seed and regime.
_ckpt = 'checkpoints/segformer_mini_minicity.pth'
_stag_config = 'configs/demo/segformer_mini_demo-acdc_tent-stag.py'


def _variant(space, weight, conf, feature_grad=True):
    return dict(config=_stag_config, checkpoint=_ckpt, cfg_options=dict(
        stag_space=space, stag_weight=weight, stag_conf=conf, stag_tau=1.0,
        stag_feature_grad=feature_grad))


methods = dict(
    source=dict(config='configs/demo/segformer_mini_demo-acdc_source.py', checkpoint=_ckpt),
    tent=dict(config='configs/demo/segformer_mini_demo-acdc_tent.py', checkpoint=_ckpt))
for _space in ('classifier', 'feature'):
    for _weight in (0.5, 1.0, 2.0):
        for _conf in (None, 0.9):
            for _fg in ((True, False) if _space == 'classifier' else (True,)):
                _name = (f"stag-{'cls' if _space == 'classifier' else 'feat'}-l{_weight:g}"
                         + ('' if _conf is None else f'-conf{_conf:g}')
                         + ('' if _fg else '-nofg'))
                methods[_name] = _variant(_space, _weight, _conf, _fg)
baseline = 'tent'
options = dict(
    rounds='test_cfg.num_rounds', lr='test_cfg.optimizer.lr', order='test_cfg.order',
    gamma='test_cfg.dirichlet.gamma', subset='test_cfg.subset', shuffle='test_cfg.shuffle',
    forgetting_every='test_cfg.forgetting.every',
    stag_space='custom_hooks.0.grad_space', stag_weight='custom_hooks.0.loss_weight',
    stag_conf='custom_hooks.0.conf_thresh', stag_tau='custom_hooks.0.tau',
    stag_feature_grad='custom_hooks.0.feature_grad')
cfg_options = dict(rounds=10, subset=25, shuffle=True, forgetting_every=10)
regimes = {
    'lr1e-4': dict(lr=1e-4),
    'lr1e-3': dict(lr=1e-3),
    'mixed': dict(lr=1e-4, order='mixed', shuffle=False),           # the order is the mix's
    'dirichlet': dict(lr=1e-4, order='dirichlet', gamma=0.1, shuffle=False),  # or the draw's
}
seeds = [0, 1, 2]
resources = dict(num_cpus=1, num_gpus=0)
env = dict(OMP_NUM_THREADS='1')
