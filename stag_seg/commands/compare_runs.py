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


def check_out(out: str, work_dirs: list[str]) -> None:
    """``--out`` is a figure file of a format matplotlib writes, and not one of the compared
    runs' own files (its ``miou.png``, ``results.*``, state)."""
    from matplotlib.backend_bases import FigureCanvasBase

    from stag_seg.engine.run_dir import RUN_FILES

    if osp.isdir(out):
        raise ValueError(f'--out {out} is a directory; give the figure file, e.g. '
                         f'{osp.join(out, DEFAULT_FIGURE)}')
    fmt = osp.splitext(out)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt and fmt not in formats:
        raise ValueError(f'--out {out}: figure format {fmt!r} is not supported; use one of '
                         f'{", ".join(sorted(formats))}')
    own = {osp.realpath(osp.join(d, name)) for d in work_dirs for name in RUN_FILES}
    if osp.realpath(out) in own:
        raise ValueError(f'--out {out} is a compared run\'s own report file; write the figure '
                         f'elsewhere (default: <first WORK_DIR>/{DEFAULT_FIGURE})')


def main(argv=None) -> None:
    args = parse_args(argv)
    from stag_seg.reports import format_comparison, load_runs, plot_miou, shape_mismatches

    out = args.out or osp.join(args.work_dirs[0], DEFAULT_FIGURE)
    try:
        check_out(out, args.work_dirs)
        runs = load_runs(args.work_dirs, args.names)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'compare_runs: {e}')
    print(format_comparison(runs, shapes=True))
    for line in shape_mismatches(runs):
        print(f'compare_runs: warning: {line}', file=sys.stderr)
    plot_miou(runs, out)
    print(f'figure: {out}')


if __name__ == '__main__':
    main()
