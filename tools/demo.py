"""The offline demo: Source vs TENT vs TENT+STAG on a drifting procedural street-scene stream.

Generates the data once (cached under data/demo), adapts the shipped source model over
fog -> night -> rain -> snow for several rounds, prints the per-domain x round tables and
writes reports, the comparison plot and a qualitative figure under work_dirs/demo.
"""
import argparse

from mmengine.config import DictAction

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.demo.pipeline import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3, help='passes over the stream')
    parser.add_argument('--images', type=int, default=50, help='stream images per condition')
    parser.add_argument('--data-root', default='data/demo')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--methods', nargs='+', default=['source', 'tent', 'tent+stag'],
                        choices=['source', 'tent', 'tent+stag'])
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for every method, e.g. custom_hooks.0.loss_weight=2')
    args = parser.parse_args()
    run_demo(args.data_root, args.work_dir, rounds=args.rounds,
             images_per_condition=args.images, methods=args.methods,
             cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
