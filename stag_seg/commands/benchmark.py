"""Measure what a step, the engine loop and start-up cost, and check the performance targets.

    stag-benchmark --device cuda --quick      # the GPU check, a few minutes
    stag-benchmark [--configs CFG ...] [--device cpu|cuda] [--size H W]
                   [--steps N] [--warmup N] [--methods NAME ...] [--speed OPT ...]
                   [--stag-methods NAME ...] [--later-methods NAME ...]
                   [--view-steps N] [--view-warmup N]
                   [--method-configs NAME=CFG ...]
                   [--skip-loop] [--loop-images N] [--loop-precisions P ...] [--loop-size H W]
                   [--stream-size H W] [--loop-workers N] [--startup-reps N]
                   [--threads N] [--out FILE]

Per config (default: SegFormer-B5 and DeepLabV3+-R50, random init, the classifier scaled so
that EATA's and SAR's filters keep pixels), every variant runs TTAAdapter.step on its own
model copy, interleaved in seeded shuffled rounds: each registered TTA method (source,
bn-adapt, tent, tent-pl, eata, sar, cotta) with the options of its shipped stream config
(configs/segformer/segformer_mit-b5_cs2acdc_<method>.py, or the benchmarked config's
sibling), on the batch that config's pipeline makes (CoTTA: its 14 test-time-augmented
views); tent + STAG in three forms; eata, sar and cotta + STAG (their -stag configs); and
(first config) tent with the speed options. On CPU (to finish within ~10 minutes on 2 cores)
the configs after the first time tent only (--later-methods), CoTTA gets 1 timed step and no
warm-up (--view-steps, --view-warmup) and no + STAG variant (--stag-methods), and the loop
runs in fp32 only (--loop-precisions), at 288x512 (--loop-size). The table gives median
time and peak memory per step and their ratios to tent; a method + STAG is also compared
with its method (informational ratios). Then: the Runner's start-up with and without yapf,
the full-resolution post-processing + scoring of one 1080p image on one CPU thread, and the
engine loop over a generated stream of 1920x1080 PNGs (resized by the config's pipeline,
scored at full resolution) per precision, with a bare step after each image, split into data
wait, step, post-processing and scoring (these two in fresh processes, as a run starts). On
CPU with one torch thread, times are the process's CPU time (unmoved by other processes),
wall time beside them. The targets are printed with their measured values and PASS / FAIL /
not measured; everything goes to a JSON file.

--quick (CUDA): SegFormer-B5 at 540x960 only, every method eager and in the fast mode
(test_cfg.fast: the whole step as a CUDA graph, fused attention, bf16), TENT + STAG with the
graph in fp32 too, the ops a step dispatches, post-processing, the engine loop at 1080p in the
fast mode, and 1, 2, 4, 8 concurrent fast TENT streams; prints the fast mode's targets.
"""
import argparse

import stag_seg  # noqa: F401  (compat patches and registration)
from stag_seg.benchmark import (
    DEFAULT_CONFIGS,
    DEFAULT_LATER_METHODS,
    DEFAULT_LOOP_IMAGES,
    DEFAULT_LOOP_PRECISIONS,
    DEFAULT_LOOP_SIZE,
    DEFAULT_SIZE,
    DEFAULT_SPEED,
    DEFAULT_STAG_METHODS,
    DEFAULT_STEPS,
    DEFAULT_THREADS,
    DEFAULT_VIEW_STEPS,
    DEFAULT_VIEW_WARMUP,
    DEFAULT_WARMUP,
    run_benchmark,
)
from stag_seg.benchmark.fixtures import FULL_RESOLUTION
from stag_seg.benchmark.quick import run_quick
from stag_seg.benchmark.variants import SPEED_VARIANTS, choose_methods


def _per_device(defaults: dict) -> str:
    def text(value) -> str:
        return ' '.join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return ', '.join(f'{k}: {text(v)}' for k, v in defaults.items())


#: the options --quick reads
QUICK_OPTIONS = ('--device', '--steps', '--warmup', '--view-steps', '--size', '--loop-images',
                 '--loop-workers', '--streams', '--out')
#: options that --quick does not read (it makes its own choices): refused with it
QUICK_IGNORES = ('configs', 'methods', 'stag_methods', 'later_methods', 'view_warmup',
                 'method_configs', 'speed', 'skip_loop', 'loop_precisions', 'loop_size',
                 'stream_size', 'startup_reps', 'threads')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('--configs', nargs='+', default=list(DEFAULT_CONFIGS),
                        help='model configs to benchmark; speed options, start-up and the loop '
                        f'run on the first (default: {" ".join(DEFAULT_CONFIGS)})')
    parser.add_argument('--device', choices=('cpu', 'cuda'),
                        help='default: cuda if available, else cpu')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                        help=f'input size (default per device: {_per_device(DEFAULT_SIZE)})')
    parser.add_argument('--steps', type=int,
                        help='timed steps per variant, interleaved (default per device: '
                        f'{_per_device(DEFAULT_STEPS)})')
    parser.add_argument('--warmup', type=int,
                        help='untimed steps per variant first, >= 1: EATA computes its Fisher '
                        'information in its first (default per device: '
                        f'{_per_device(DEFAULT_WARMUP)}; variants with views: --view-warmup)')
    parser.add_argument('--methods', nargs='+', metavar='NAME',
                        help='TTA methods to time on the first config (default: every '
                        'registered one; tent, the baseline, is always in), each with its '
                        'stream config\'s options, and + STAG where a <name>-stag config is '
                        'shipped')
    parser.add_argument('--stag-methods', nargs='+', metavar='NAME',
                        help='methods (of --methods, besides tent) timed + STAG too, from their '
                        '<name>-stag configs; others are ignored (default per device: '
                        f'{_per_device(DEFAULT_STAG_METHODS)}, None meaning every one with '
                        'such a config; "all": every one)')
    parser.add_argument('--later-methods', nargs='+', metavar='NAME',
                        help='TTA methods to time on the configs after the first (default per '
                        f'device: {_per_device(DEFAULT_LATER_METHODS)}; None: as --methods; '
                        '"all": every registered one)')
    parser.add_argument('--view-steps', type=int,
                        help='timed steps of the variants with test-time-augmented views '
                        '(CoTTA, 14 views per step; default per device: '
                        f'{_per_device(DEFAULT_VIEW_STEPS)}; None: --steps)')
    parser.add_argument('--view-warmup', type=int,
                        help='warm-up steps of the variants with test-time-augmented views '
                        f'(default per device: {_per_device(DEFAULT_VIEW_WARMUP)}; None: '
                        '--warmup; 0: their timed step is their first)')
    parser.add_argument('--method-configs', nargs='+', metavar='NAME=CFG', default=[],
                        help='stream config to take a method\'s options (and pipeline) from, '
                        'e.g. cotta=configs/segformer/segformer_mit-b5_cs2acdc_cotta.py or '
                        'eata-stag=...; default: the benchmarked config\'s sibling '
                        '(<model>_cs2acdc_<name>.py), else the shipped SegFormer-B5 one')
    parser.add_argument('--speed', nargs='*', choices=list(SPEED_VARIANTS), metavar='OPT',
                        help='tent with these options on the first config '
                        f'({", ".join(SPEED_VARIANTS)}; default per device: '
                        f'{_per_device(DEFAULT_SPEED)}; none: --speed alone)')
    parser.add_argument('--skip-loop', action='store_true',
                        help='do not time the engine loop')
    parser.add_argument('--loop-images', type=int,
                        help="images in the loop benchmark's stream (default per device: "
                        f'{_per_device(DEFAULT_LOOP_IMAGES)})')
    parser.add_argument('--loop-precisions', nargs='+', choices=('fp32', 'bf16'),
                        help='one loop run per precision; fp32 is the target\'s (default per '
                        f'device: {_per_device(DEFAULT_LOOP_PRECISIONS)})')
    parser.add_argument('--loop-size', nargs=2, type=int, metavar=('H', 'W'),
                        help='input size of the loop and its bare step (default: --size if '
                        f'given, else per device: {_per_device(DEFAULT_LOOP_SIZE)}, None '
                        'meaning --size\'s default)')
    parser.add_argument('--stream-size', nargs=2, type=int, metavar=('H', 'W'),
                        default=list(FULL_RESOLUTION),
                        help="size of the loop stream's PNGs and labels, and of the "
                        'post-processing benchmark\'s output (default: ACDC\'s '
                        f'{FULL_RESOLUTION[0]} {FULL_RESOLUTION[1]})')
    parser.add_argument('--loop-workers', type=int,
                        help="loader workers in the loop (default: the config's)")
    parser.add_argument('--startup-reps', type=int, default=2,
                        help='Runner builds with and without yapf, each (0: skip; default 2)')
    parser.add_argument('--out', default='work_dirs/benchmark.json',
                        help='JSON file with every number and the machine '
                        '(default: work_dirs/benchmark.json)')
    parser.add_argument('--quick', action='store_true',
                        help='the GPU check in a few minutes (B5 only, eager vs fast mode, '
                        f'loop, concurrent streams; CUDA only; {", ".join(QUICK_OPTIONS)} '
                        'apply, the other options are refused with it)')
    parser.add_argument('--streams', nargs='+', type=int, default=[1, 2, 4, 8], metavar='N',
                        help='--quick: concurrent fast TENT streams timed (default: 1 2 4 8)')
    parser.add_argument('--threads', type=int,
                        help='torch intra-op threads (default per device: '
                        f"{_per_device(DEFAULT_THREADS)}; None: torch's choice)")
    return parser.parse_args(argv)


def method_configs(pairs: list[str]) -> dict[str, str]:
    """``NAME=CONFIG`` pairs as a dict; a pair without '=' is one clear error."""
    out = {}
    for pair in pairs:
        name, sep, config = pair.partition('=')
        if not sep or not name or not config:
            raise SystemExit(f'--method-configs: expected NAME=CONFIG, got {pair!r}')
        out[name] = config
    return out


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad values before anything is built: one line naming the flag (a flag that the
    chosen mode would ignore included)."""
    import torch

    defaults = vars(parse_args([]))
    given = [dest for dest in (QUICK_IGNORES if args.quick else ('streams',))
             if getattr(args, dest) != defaults[dest]]
    if given:
        flag = '--' + given[0].replace('_', '-')
        raise SystemExit(f'benchmark: {flag} does not apply with --quick (it applies: '
                         f'{", ".join(QUICK_OPTIONS)})' if args.quick else
                         f'benchmark: {flag} applies with --quick only')

    counts = {'--steps': (args.steps, 1), '--warmup': (args.warmup, 1),
              '--view-steps': (args.view_steps, 1), '--view-warmup': (args.view_warmup, 0),
              '--loop-images': (args.loop_images, 1),
              '--loop-workers': (args.loop_workers, 0), '--startup-reps': (args.startup_reps, 0),
              '--threads': (args.threads, 1)}
    for flag, (value, least) in counts.items():
        if value is not None and value < least:
            raise SystemExit(f'benchmark: {flag}: expected a number >= {least}, got {value}')
    if args.streams and min(args.streams) < 1:
        raise SystemExit(f'benchmark: --streams: expected numbers >= 1, got {args.streams}')
    for flag, pair in (('--size', args.size), ('--loop-size', args.loop_size),
                       ('--stream-size', args.stream_size)):
        if pair is not None and min(pair) < 1:
            raise SystemExit(f'benchmark: {flag}: expected two sizes >= 1, got {pair}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('benchmark: --device cuda: CUDA is not available on this machine '
                         '(torch.cuda.is_available() is False); use --device cpu')
    for flag, names in (('--methods', args.methods), ('--later-methods', args.later_methods),
                        ('--stag-methods', args.stag_methods)):
        if names and names != ['all']:
            try:
                choose_methods(names)
            except ValueError as e:
                raise SystemExit(f'benchmark: {flag}: {str(e).removeprefix("--methods: ")}'
                                 ) from None


def main(argv=None) -> None:
    args = parse_args(argv)
    check_args(args)
    if args.quick:
        if args.device == 'cpu':
            raise SystemExit('--quick checks the GPU targets: it needs --device cuda')
        quick = {k: v for k, v in dict(size=args.size, steps=args.steps, warmup=args.warmup,
                                       view_steps=args.view_steps,
                                       loop_images=args.loop_images,
                                       loop_workers=args.loop_workers).items()
                 if v is not None}
        out = args.out if args.out != 'work_dirs/benchmark.json' else \
            'work_dirs/benchmark_quick.json'
        try:
            run_quick(streams=args.streams, out=out, **quick)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        return
    run_benchmark(args.configs, tuple(args.size) if args.size else None, args.device,
                  args.steps, args.warmup, methods=args.methods, speed=args.speed,
                  loop=not args.skip_loop, loop_images=args.loop_images,
                  loop_precisions=args.loop_precisions,
                  loop_size=tuple(args.loop_size) if args.loop_size else None,
                  stream_size=tuple(args.stream_size),
                  loop_workers=args.loop_workers, startup_reps=args.startup_reps,
                  out=args.out, threads=args.threads,
                  method_configs=method_configs(args.method_configs),
                  later_methods=args.later_methods, view_steps=args.view_steps,
                  view_warmup=args.view_warmup, stag_methods=args.stag_methods)


if __name__ == '__main__':
    main()
