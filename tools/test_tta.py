"""Run continual test-time adaptation over a config's stream and write per-domain reports.

    python tools/test_tta.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR] [--resume]
                             [--cfg-options KEY=VALUE ...]
"""
import argparse

from mmengine.config import DictAction

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.engine.launch import load_tta_config, run_tta


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file (test_cfg.type=ContinualTTALoop)')
    parser.add_argument('checkpoint', nargs='?', help='source model checkpoint')
    parser.add_argument('--work-dir', help='where logs, results.* and miou.png go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--out', help='save every scored prediction as *_labelTrainIds.png '
                        'under OUT/round_<r>/<domain>/')
    parser.add_argument('--resume', action='store_true',
                        help='continue an interrupted stream from the work dir\'s checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_cfg.num_rounds=2')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_tta_config(args.config, args.work_dir, args.cfg_options, args.resume, args.out)
    run_tta(cfg, args.checkpoint)


if __name__ == '__main__':
    main()
