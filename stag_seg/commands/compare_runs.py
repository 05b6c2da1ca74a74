"""Compare CTTA runs: one mIoU-over-the-stream figure and one methods x domains table (with
each run's rounds and images per round; runs of different streams are warned about)."""
import argparse
import os.path as osp
import sys

DEFAULT_FIGURE = 'compare_miou.png'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR',
                        help='run directories holding results.jsonl')
    parser.add_argument('--out', help=f'figure path (default: <first WORK_DIR>/{DEFAULT_FIGURE})')
    parser.add_argument('--names', nargs='+', help='method names, one per WORK_DIR')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from stag_seg.reports import format_comparison, load_runs, plot_miou, shape_mismatches

    try:
        runs = load_runs(args.work_dirs, args.names)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'compare_runs: {e}')
    out = args.out or osp.join(args.work_dirs[0], DEFAULT_FIGURE)
    print(format_comparison(runs, shapes=True))
    for line in shape_mismatches(runs):
        print(f'compare_runs: warning: {line}', file=sys.stderr)
    plot_miou(runs, out)
    print(f'figure: {out}')


if __name__ == '__main__':
    main()
