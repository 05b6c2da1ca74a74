"""Measure STAG's overhead: time and peak memory of one adaptation step, and the loop's own cost.

    python tools/benchmark.py [--configs CFG ...] [--device cpu|cuda] [--size H W]
                              [--steps N] [--warmup N] [--skip-loop] [--loop-images N]
                              [--threads N] [--out FILE]

Steps of source (forward only), tent, tent + STAG (feature, K-space), tent + STAG (classifier)
and tent + STAG (feature, naive C-space) run interleaved in one process (each round runs every
variant once, in a seeded shuffled order) on their own copies of each config's model (random
init); the table gives median time and peak memory per step and their ratios to tent. The
engine loop (tent over a short generated ACDC stream) is compared with the bare tent step.
All numbers and the machine go to a JSON file.
"""
import argparse

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.benchmark import (
    DEFAULT_CONFIGS,
    DEFAULT_LOOP_IMAGES,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    DEFAULT_THREADS,
    DEFAULT_WARMUP,
    run_benchmark,
)


def _per_device(defaults: dict) -> str:
    return ', '.join(f'{k}: {v}' for k, v in defaults.items())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('--configs', nargs='+', default=list(DEFAULT_CONFIGS),
                        help='model configs to benchmark; the loop runs on the first '
                        f'(default: {" ".join(DEFAULT_CONFIGS)})')
    parser.add_argument('--device', choices=('cpu', 'cuda'),
                        help='default: cuda if available, else cpu')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                        help=f'input size (default per device: {_per_device(DEFAULT_SIZE)})')
    parser.add_argument('--steps', type=int,
                        help='timed steps per variant, interleaved (default per device: '
                        f'{_per_device(DEFAULT_STEPS)})')
    parser.add_argument('--warmup', type=int,
                        help='untimed steps per variant first (default per device: '
                        f'{_per_device(DEFAULT_WARMUP)})')
    parser.add_argument('--skip-loop', action='store_true',
                        help='do not time the engine loop (tent over a generated stream)')
    parser.add_argument('--loop-images', type=int,
                        help='images in the loop benchmark\'s stream (default per device: '
                        f'{_per_device(DEFAULT_LOOP_IMAGES)})')
    parser.add_argument('--out', default='work_dirs/benchmark.json',
                        help='JSON file with every number and the machine '
                        '(default: work_dirs/benchmark.json)')
    parser.add_argument('--threads', type=int,
                        help='torch intra-op threads (default per device: '
                        f'{_per_device(DEFAULT_THREADS)}; None: torch\'s choice)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run_benchmark(args.configs, tuple(args.size) if args.size else None, args.device,
                  args.steps, args.warmup, loop=not args.skip_loop,
                  loop_images=args.loop_images, out=args.out, threads=args.threads)


if __name__ == '__main__':
    main()
