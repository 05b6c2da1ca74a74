"""Train the demo's source model on mini-Cityscapes and publish it as a weights-only checkpoint.

    stag-train-demo-model [--config CONFIG] [--work-dir DIR] [--out FILE]
                          [--max-iters N]

Trains with mmseg's own loop on mini-Cityscapes train, scores mini-Cityscapes val, and writes
the published checkpoint (state_dict and meta with the clean-val metrics); the defaults
reproduce the shipped checkpoints/segformer_mini_minicity.pth. Needs the demo data first:
python tools/make_demo_data.py.
"""
import argparse

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.demo.source_model import DEMO_CHECKPOINT, DEMO_MODEL_CONFIG, train_source_model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEMO_MODEL_CONFIG,
                        help=f'model and training config (default: {DEMO_MODEL_CONFIG})')
    parser.add_argument('--work-dir', default='work_dirs/segformer_mini_minicity',
                        help='logs and training checkpoints '
                        '(default: work_dirs/segformer_mini_minicity)')
    parser.add_argument('--out', default=DEMO_CHECKPOINT,
                        help=f'published checkpoint path (default: {DEMO_CHECKPOINT})')
    parser.add_argument('--max-iters', type=int,
                        help='override the schedule\'s length (smoke runs)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    metrics = train_source_model(args.config, args.work_dir, args.out, args.max_iters)
    print(f"clean val (mini-Cityscapes val): mIoU {metrics['mIoU']:.2f}  "
          f"mAcc {metrics['mAcc']:.2f}  aAcc {metrics['aAcc']:.2f}  -> {args.out}")


if __name__ == '__main__':
    main()
