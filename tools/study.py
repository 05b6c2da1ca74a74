"""Apply the STAG study's rule for the defaults (docs/study.md) to a finished sweep.

    python tools/study.py configs/sweeps/study_stag.py --out work_dirs/sweeps/study_stag

Reads every finished run of the sweep, computes each STAG setting's paired gain over the
baseline (TENT, same seed and regime) in overall mean mIoU per regime, and picks the setting
with the best worst-case gain (settings within 0.05 mIoU of it: the best mean gain). Prints the
table and the choice, and writes them to OUT/defaults.md.
"""
import argparse
import os.path as osp
import sys


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog=__doc__.split('\n\n', 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('spec', help='the sweep spec (e.g. configs/sweeps/study_stag.py)')
    parser.add_argument('--out', required=True, help="the sweep's out dir (its runs)")
    parser.add_argument('--prefix', default='stag-',
                        help='methods that are STAG settings (default: names starting stag-)')
    args = parser.parse_args(argv)

    import stag_seg  # noqa: F401  (compat patches and registration)
    from stag_seg.demo.study import choose_default, gains_table, setting_gains
    from stag_seg.sweep import load_spec, paired_differences
    from stag_seg.sweep.driver import collect_scores

    spec = load_spec(args.spec)
    scores = collect_scores(spec, args.out)
    methods = [m for m in dict.fromkeys(r.method for r in spec.runs)
               if m.startswith(args.prefix)]
    settings = setting_gains(paired_differences(spec.runs, scores, spec.baseline),
                             methods=methods)
    if not settings:
        sys.exit(f'study: no STAG setting of {args.spec} has finished paired runs in {args.out}')
    chosen = choose_default(settings)
    text = (f'Paired gain over {spec.baseline} (overall mean mIoU, mean over seeds), per '
            f'regime; {len(scores)} finished runs.\n\n{gains_table(settings, chosen)}\n\n'
            f'Chosen by the rule: **{chosen.method}** (worst case {chosen.worst:+.2f}, mean '
            f'{chosen.mean:+.2f}).\n')
    print(text)
    with open(osp.join(args.out, 'defaults.md'), 'w') as f:
        f.write(text)


if __name__ == '__main__':
    main()
