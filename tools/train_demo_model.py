"""Train the demo's source model on mini-Cityscapes and publish it (reproduces the shipped
checkpoint). Needs the demo data: python tools/make_demo_data.py."""
import argparse

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.demo.source_model import DEMO_CHECKPOINT, DEMO_MODEL_CONFIG, train_source_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEMO_MODEL_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/segformer_mini_minicity')
    parser.add_argument('--out', default=DEMO_CHECKPOINT, help='published checkpoint path')
    parser.add_argument('--max-iters', type=int, help='override the schedule (smoke runs)')
    args = parser.parse_args()
    metrics = train_source_model(args.config, args.work_dir, args.out, args.max_iters)
    print(f"clean val (mini-Cityscapes val): mIoU {metrics['mIoU']:.2f}  "
          f"mAcc {metrics['mAcc']:.2f}  aAcc {metrics['aAcc']:.2f}  -> {args.out}")


if __name__ == '__main__':
    main()
