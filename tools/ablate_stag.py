"""Ablate STAG on the offline demo stream: loss weight, gradient space, anchor temperature.

    python tools/ablate_stag.py [--rounds 3] [--images 50] [--data-root data/demo]
                                [--work-dir work_dirs/ablation] [--out FILE]

Runs TENT, then TENT+STAG for each setting of the grid below over the demo stream, and
prints one table: mean mIoU over rounds per domain, overall, in the last round, and on clean
val. Needs the demo data (python tools/make_demo_data.py, or a run of tools/demo.py).
"""
import argparse

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.demo.ablation import default_grid, run_ablation, setting_name


def parse_args() -> argparse.Namespace:
    grid = '\n'.join(f'  {setting_name(s)}' for s in default_grid())
    parser = argparse.ArgumentParser(description=__doc__, epilog=f'grid:\n{grid}',
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=3,
                        help='passes over the stream (default: 3)')
    parser.add_argument('--images', type=int, default=50,
                        help='first N images of each condition, as in the demo (default: 50)')
    parser.add_argument('--data-root', default='data/demo',
                        help='the generated demo data (default: data/demo)')
    parser.add_argument('--work-dir', default='work_dirs/ablation',
                        help='where each setting\'s run goes (default: work_dirs/ablation)')
    parser.add_argument('--out', help='also write the table to this markdown file')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    _, table = run_ablation(data_root=args.data_root, work_dir=args.work_dir,
                            rounds=args.rounds, images_per_condition=args.images)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            images = f' --images {args.images}' if args.images != 50 else ''
            f.write('Command: `python tools/ablate_stag.py'
                    f' --rounds {args.rounds}{images}`\n\n```\n{table}\n```\n')


if __name__ == '__main__':
    main()
