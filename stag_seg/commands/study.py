"""Apply the STAG study's rule for the defaults (docs/study.md) to a finished sweep.

    stag-study stag_seg::sweeps/study_stag.py --out work_dirs/sweeps/study_stag

Reads every finished run of the sweep, computes each STAG setting's paired gain over the
baseline (TENT, same seed and regime) in overall mean mIoU per regime, and picks the setting
with the best worst-case gain (settings within 0.05 mIoU of it: the best mean gain). Prints the
table and the choice, and writes them to OUT/defaults.md.
"""
import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('spec', help='the sweep spec (e.g. configs/sweeps/study_stag.py)')
    parser.add_argument('--out', required=True, help="the sweep's out dir (its runs)")
    parser.add_argument('--prefix', default='stag-',
                        help='methods that are STAG settings (default: names starting stag-)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import stag_seg  # noqa: F401  (compat patches and registration)
    from stag_seg.sweep.study import defaults_report

    try:
        print(defaults_report(args.spec, args.out, args.prefix))
    except ValueError as e:
        sys.exit(f'study: {e}')


if __name__ == '__main__':
    main()
