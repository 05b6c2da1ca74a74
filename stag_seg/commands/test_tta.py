"""Run continual test-time adaptation over a config's stream and write per-domain reports.

    stag-tta CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR] [--show-dir DIR]
             [--show-interval K] [--vis-backend tensorboard|wandb|mlflow ...] [--resume]
             [--random-init] [--trust-checkpoint] [--amp bf16|fp16] [--verbose]
             [--cfg-options KEY=VALUE ...]

CONFIG: a file, stag_seg::<folder>/<name>.py (the shipped configs, from any directory) or a
shipped config's name (e.g. segformer_mit-b5_cs2acdc_tent-stag).

The stream, the method, the optimizer and the plug-ins come from CONFIG (see the README,
"The stream, in the config"). Reports land in the work dir as each domain ends:
results.jsonl, results.csv, results.md, miou.png, run.json (and tta_state.pth for --resume);
an earlier run's files there are moved to previous/<time>/ unless --resume continues it.
The console shows one line per stage and the table at the end; the log file under the work
dir holds the config, per-class tables, every stage line and the loss terms every 10 steps,
which also go, with each domain's metrics and counters, to the config's visualizer (vis
backends: vis_data/scalars.json by default; TensorBoard, W&B, MLflow with --vis-backend).
"""
import argparse
import sys

from stag_seg.commands._options import CfgOptionsAction

#: --vis-backend's choices: mmengine's vis backends
VIS_BACKENDS = {'tensorboard': 'TensorboardVisBackend', 'wandb': 'WandbVisBackend',
                'mlflow': 'MLflowVisBackend'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (test_cfg.type=ContinualTTALoop)')
    parser.add_argument('checkpoint', nargs='?', help='source model checkpoint (mmseg format)')
    parser.add_argument('--work-dir', help='where logs and reports go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--out', help='also save every scored prediction as '
                        '*_labelTrainIds.png under OUT/round_<r>/<domain>/')
    parser.add_argument('--show-dir', help='also save every scored image with its colourised '
                        'prediction beside it (the dataset\'s palette) as PNG under '
                        'SHOW_DIR/round_<r>/<domain>/')
    parser.add_argument('--show-interval', type=int, metavar='K',
                        help='with --show-dir (or a config\'s test_cfg.show_dir): every K-th '
                        'scored image of each domain and round (default: 1, all)')
    parser.add_argument('--vis-backend', nargs='+', choices=list(VIS_BACKENDS),
                        help="send the stream's scalars (loss terms, per-domain mIoU/mAcc and "
                        "counters, round means) to these mmengine vis backends too, besides "
                        "the local one (vis_data/scalars.json); the same as setting "
                        'visualizer.vis_backends in the config')
    parser.add_argument('--resume', action='store_true',
                        help="continue an interrupted stream from the work dir's tta_state.pth "
                        '(the config must be the same; a finished run is left as it is)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='the checkpoint is not plain weights (torch.load weights_only=True '
                        'refuses it) but you trust it: unpickle it fully, which can run code')
    parser.add_argument('--random-init', action='store_true',
                        help='run without a checkpoint, from random initialisation (for '
                        'smoke tests; run.json records it)')
    parser.add_argument('--amp', choices=('bf16', 'fp16'),
                        help='autocast the forward passes to this precision (losses stay '
                        'float32; fp16 needs CUDA); the same as --cfg-options test_cfg.amp=...')
    parser.add_argument('--fast', action='store_true',
                        help='the fast mode (test_cfg.fast=True): on CUDA the whole adaptation '
                        'step as one CUDA graph, fused attention and bf16 autocast; on CPU '
                        'fused attention and the fused optimizer only (README "Performance")')
    parser.add_argument('--verbose', action='store_true',
                        help='print the log (config, per-class tables, third-party warnings) '
                        'on the console too, and full tracebacks')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, e.g. test_cfg.num_rounds=2 (quote a '
                        "value with spaces: 'test_dataloader.dataset.data_root=/my data')")
    args = parser.parse_args(argv)
    extra = {}
    if args.amp:
        extra['test_cfg.amp'] = args.amp
    if args.fast:
        extra['test_cfg.fast'] = True
    if args.show_dir:
        extra['test_cfg.show_dir'] = args.show_dir
    if args.show_interval is not None:      # also for a show_dir set in the config
        extra['test_cfg.show_interval'] = args.show_interval
    if args.vis_backend:
        extra['visualizer.vis_backends'] = [
            dict(type='LocalVisBackend'), *(dict(type=VIS_BACKENDS[b]) for b in args.vis_backend)]
    if extra:
        args.cfg_options = {**(args.cfg_options or {}), **extra}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from stag_seg.engine.cli import quiet_warnings, run_cli

    if not args.verbose:
        quiet_warnings()
    sys.exit(run_cli(args, argv))


if __name__ == '__main__':
    main()
