# Smoke sweep on the offline demo (make the data first: python tools/make_demo_data.py):
# TENT vs TENT+STAG, 1 round, Adam lr 1e-4 and 1e-3, stream seeds 0 and 1 -> 8 runs.
#   python tools/sweep.py configs/sweeps/demo_smoke.py               # local Ray instance
#   python tools/sweep.py configs/sweeps/demo_smoke.py --resume      # after an interruption
# Relative paths are taken from the current directory (run from the repository root);
# names starting with _ are helper variables.
_checkpoint = 'checkpoints/segformer_mini_minicity.pth'
methods = {
    'tent': dict(config='configs/demo/segformer_mini_demo-acdc_tent.py', checkpoint=_checkpoint),
    'tent-stag': dict(config='configs/demo/segformer_mini_demo-acdc_tent-stag.py',
                      checkpoint=_checkpoint),
}
baseline = 'tent'              # tent-stag (seed s, regime r) is paired with tent (s, r)
options = dict(                # short names for cfg keys
    rounds='test_cfg.num_rounds',
    lr='test_cfg.optimizer.lr',
)
cfg_options = dict(rounds=1)   # every run
grid = dict(lr=[1e-4, 1e-3])   # regimes 'lr=0.0001' and 'lr=0.001'
# randomness.seed: the stream order and every RNG. In this sequential stream the demo's TENT
# runs are deterministic, so both seeds give the same numbers (the report notes it); seeds are
# replicates only where something is random (mixed order, label-shift sampling, ...).
seeds = [0, 1]
resources = dict(num_cpus=1, num_gpus=0)
