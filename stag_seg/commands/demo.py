"""The offline demo: Source vs TENT vs TENT+STAG on a drifting procedural street-scene stream.

    stag-demo [--rounds 10] [--images 50] [--data-root DIR]
              [--work-dir work_dirs/demo] [--methods source tent tent+stag]
              [--cfg-options KEY=VALUE ...]

Renders the data once (cached under --data-root: mini-Cityscapes and 50 mini-ACDC images per
condition, more only if --images asks for more), adapts the shipped source model over
fog -> night -> rain -> snow for --rounds rounds on the first --images images of each
condition, prints the per-domain x round tables and the comparison, and writes each method's
reports, the comparison plot and a qualitative figure under --work-dir.
"""
import argparse
import sys
import warnings

from stag_seg.commands._options import CfgOptionsAction

warnings.filterwarnings('ignore', category=UserWarning, module=r'(mmseg|mmengine|mmcv)\.')
import stag_seg  # noqa: E402,F401  (compat patches and registration)
from stag_seg.demo.launch import (  # noqa: E402
    DEFAULT_METHODS,
    DEMO_CONFIGS,
    DEMO_ROUNDS,
    check_demo_options,
    repo_path,
)
from stag_seg.demo.run import run_demo  # noqa: E402
from stag_seg.engine.work_dir import check_dir_option  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=DEMO_ROUNDS,
                        help='passes over the stream (default: %(default)s, a long horizon: '
                        "TENT's drift shows)")
    parser.add_argument('--images', type=int, default=50,
                        help='stream images per condition: the first N rendered ones; fewer '
                        'than cached reuses the cache, more renders more (default: 50)')
    parser.add_argument('--data-root',
                        help='where the generated data is cached (default: data/demo in a '
                        'clone; installed: the user cache, $STAG_SEG_CACHE or '
                        '~/.cache/stag-seg, /demo)')
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where reports and figures go (default: work_dirs/demo, in the '
                        "clone's root or, installed, the current directory)")
    parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS),
                        choices=list(DEMO_CONFIGS), metavar='METHOD',
                        help=f'methods to run, in order, from: {" ".join(DEMO_CONFIGS)} '
                        f'(default: {" ".join(DEFAULT_METHODS)})')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='config overrides for every method, e.g. test_cfg.optimizer.lr=1e-3;'
                        ' custom_hooks.* ones (the STAG plug-in, e.g. custom_hooks.0.loss_weight'
                        '=1) go to the +stag methods only')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    for flag, value in (('--rounds', args.rounds), ('--images', args.images)):
        if value < 1:
            sys.exit(f'demo: {flag}: expected a number >= 1, got {value}')
    try:
        for flag, path in (('--work-dir', args.work_dir), ('--data-root', args.data_root)):
            check_dir_option(path and repo_path(path), flag)
        check_demo_options(args.methods, args.cfg_options)
        run_demo(args.data_root, args.work_dir, rounds=args.rounds,
                 images_per_condition=args.images, methods=args.methods,
                 cfg_options=args.cfg_options)
    except (ValueError, OSError) as e:       # they name the file or flag
        sys.exit(f'demo: {e}')


if __name__ == '__main__':
    main()
