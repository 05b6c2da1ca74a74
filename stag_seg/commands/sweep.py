"""Run a sweep of continual-TTA runs (stag-tta) on Ray or serially, then report.

    stag-sweep SWEEP [--backend ray|serial] [--address ADDR] [--resume] [--out DIR]
               [--num-cpus N] [--num-gpus N] [--dry-run] [--report-only]
"""
import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sweep', help='sweep spec (.py), e.g. configs/sweeps/demo_smoke.py')
    parser.add_argument('--backend', choices=('ray', 'serial'), default='ray',
                        help='ray (default): runs in parallel as Ray tasks; serial: one after '
                        'another in this process')
    parser.add_argument('--address', help='join this Ray cluster instead of starting a local '
                        'instance (e.g. auto)')
    parser.add_argument('--resume', action='store_true',
                        help='continue a sweep in an out dir that already has runs: finished '
                        'runs are skipped, interrupted ones continue with test_tta.py --resume')
    parser.add_argument('--out', help='sweep directory (default: work_dirs/sweeps/<spec name>)')
    parser.add_argument('--num-cpus', type=int, help='CPUs of the local Ray instance '
                        '(default: all)')
    parser.add_argument('--num-gpus', type=int, help='GPUs of the local Ray instance '
                        '(default: all)')
    parser.add_argument('--dry-run', action='store_true',
                        help='list the runs, their state and commands; launch nothing')
    parser.add_argument('--report-only', action='store_true',
                        help='(re)write the report from the finished runs; launch nothing')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from stag_seg.sweep import SweepError, SweepInterrupted, SweepSpecError, run_sweep

    try:
        return run_sweep(args.sweep, out_dir=args.out, backend=args.backend,
                         address=args.address, resume=args.resume, num_cpus=args.num_cpus,
                         num_gpus=args.num_gpus, dry_run=args.dry_run,
                         report_only=args.report_only)
    except SweepInterrupted as e:          # Ctrl-C / SIGTERM: Ray is shut down, results kept
        print(f'sweep: {e}', file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print('sweep: interrupted before any run was launched', file=sys.stderr)
        return 130
    except (SweepError, SweepSpecError) as e:
        print(f'sweep: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
