"""Ablate STAG on the offline demo stream (loss weight, gradient space, anchor temperature);
prints one table (mean mIoU over rounds per domain, overall, last round, clean val)."""
import argparse

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.demo.ablation import run_ablation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--data-root', default='data/demo')
    parser.add_argument('--work-dir', default='work_dirs/ablation')
    parser.add_argument('--out', help='also write the table to this markdown file')
    args = parser.parse_args()
    _, table = run_ablation(data_root=args.data_root, work_dir=args.work_dir,
                            rounds=args.rounds)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('Command: `python tools/ablate_stag.py'
                    f' --rounds {args.rounds}`\n\n```\n{table}\n```\n')


if __name__ == '__main__':
    main()
