"""The offline demo: Source vs TENT vs TENT+STAG on a drifting procedural street-scene stream.

    python tools/demo.py [--rounds 3] [--images 50] [--data-root data/demo]
                         [--work-dir work_dirs/demo] [--methods source tent tent+stag]
                         [--cfg-options KEY=VALUE ...]

Renders the data once (cached under --data-root: mini-Cityscapes and 50 mini-ACDC images per
condition, more only if --images asks for more), adapts the shipped source model over
fog -> night -> rain -> snow for --rounds rounds on the first --images images of each
condition, prints the per-domain x round tables and the comparison, and writes each method's
reports, the comparison plot and a qualitative figure under --work-dir.
"""
import argparse

from mmengine.config import DictAction

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.demo.launch import DEMO_CONFIGS
from stag_seg.demo.run import run_demo


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=3,
                        help='passes over the stream (default: 3)')
    parser.add_argument('--images', type=int, default=50,
                        help='stream images per condition: the first N rendered ones; fewer '
                        'than cached reuses the cache, more renders more (default: 50)')
    parser.add_argument('--data-root', default='data/demo',
                        help='where the generated data is cached (default: data/demo)')
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where reports and figures go (default: work_dirs/demo)')
    parser.add_argument('--methods', nargs='+', default=list(DEMO_CONFIGS),
                        choices=list(DEMO_CONFIGS),
                        help=f'methods to run, in order (default: {" ".join(DEMO_CONFIGS)})')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides for every method, e.g. '
                        'custom_hooks.0.loss_weight=2')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_demo(args.data_root, args.work_dir, rounds=args.rounds,
             images_per_condition=args.images, methods=args.methods,
             cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
