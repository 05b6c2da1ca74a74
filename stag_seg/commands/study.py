"""Apply the STAG study's rule for the defaults (docs/study.md) to a finished sweep.

    stag-study stag_seg::sweeps/study_stag.py --out work_dirs/sweeps/study_stag

Reads every finished run of the sweep, computes each STAG setting's paired gain over the
baseline (TENT, same seed and regime) in overall mean mIoU per regime, and picks the setting
with the best worst-case gain (settings within 0.05 mIoU of it: the best mean gain). Prints the
table (n: seed pairs per cell) and the choice, and writes them to OUT/defaults.md. A sweep whose
cells lack seeds (for a setting or its baseline) is refused, or with --partial decided among
the complete settings.
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
    parser.add_argument('--partial', action='store_true',
                        help='decide among the settings whose cells have every seed (for them '
                        'and their baseline); the others are listed as left out (default: '
                        'refuse an incomplete sweep)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import stag_seg  # noqa: F401  (compat patches and registration)
    from stag_seg.sweep.study import defaults_report

    try:
        print(defaults_report(args.spec, args.out, args.prefix, args.partial))
    except ValueError as e:
        sys.exit(f'study: {e}')


if __name__ == '__main__':
    main()
