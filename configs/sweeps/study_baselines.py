# The STAG study, phase 2 (docs/study.md): EATA and SAR with and without STAG (at the defaults
# phase 1 chose), on the same stream, regimes and seeds as phase 1
# (configs/sweeps/study_stag.py), each +STAG run paired with its own base method.
#   python tools/sweep.py configs/sweeps/study_baselines.py --out work_dirs/sweeps/study_baselines
# CoTTA is left out: its 14-view ensemble costs ~20 TENT steps per image on CPU, ~10 hours for
# these 24 runs on 2 cores; the demo compares it on a shorter stream (README).
_ckpt = 'checkpoints/segformer_mini_minicity.pth'
_demo = 'configs/demo/segformer_mini_demo-acdc_{}.py'
methods = dict(
    eata=dict(config=_demo.format('eata'), checkpoint=_ckpt),
    sar=dict(config=_demo.format('sar'), checkpoint=_ckpt),
    **{'eata-stag': dict(config=_demo.format('eata-stag'), checkpoint=_ckpt, baseline='eata'),
       'sar-stag': dict(config=_demo.format('sar-stag'), checkpoint=_ckpt, baseline='sar')})
options = dict(
    rounds='test_cfg.num_rounds', lr='test_cfg.optimizer.lr', order='test_cfg.order',
    gamma='test_cfg.dirichlet.gamma', subset='test_cfg.subset', shuffle='test_cfg.shuffle',
    forgetting_every='test_cfg.forgetting.every')
cfg_options = dict(rounds=10, subset=25, shuffle=True, forgetting_every=10)
regimes = {
    'lr1e-4': dict(lr=1e-4),
    'lr1e-3': dict(lr=1e-3),
    'mixed': dict(lr=1e-4, order='mixed', shuffle=False),
    'dirichlet': dict(lr=1e-4, order='dirichlet', gamma=0.1, shuffle=False),
}
seeds = [0, 1, 2]
resources = dict(num_cpus=1, num_gpus=0)
env = dict(OMP_NUM_THREADS='1')
