"""Run continual test-time adaptation over a config's stream and write per-domain reports.

    python tools/test_tta.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR] [--resume]
                             [--random-init] [--trust-checkpoint] [--amp bf16|fp16]
                             [--verbose]
                             [--cfg-options KEY=VALUE ...]

The stream, the method, the optimizer and the plug-ins come from CONFIG (see the README,
"The stream, in the config"). Reports land in the work dir as each domain ends:
results.jsonl, results.csv, results.md, miou.png, run.json (and tta_state.pth for --resume);
an earlier run's files there are moved to previous/<time>/ unless --resume continues it.
The console shows one line per stage and the table at the end; the log file under the work
dir holds the config, per-class tables and every stage line.
"""
import argparse
import sys

from mmengine.config import DictAction


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
    parser.add_argument('--verbose', action='store_true',
                        help='print the log (config, per-class tables, third-party warnings) '
                        'on the console too, and full tracebacks')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_cfg.num_rounds=2')
    args = parser.parse_args(argv)
    if args.amp:
        args.cfg_options = {**(args.cfg_options or {}), 'test_cfg.amp': args.amp}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from stag_seg.engine.cli import quiet_warnings, run_cli

    if not args.verbose:
        quiet_warnings()
    sys.exit(run_cli(args))


if __name__ == '__main__':
    main()
