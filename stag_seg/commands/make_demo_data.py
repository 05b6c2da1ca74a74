"""Render the offline demo data: procedural mini-Cityscapes and mini-ACDC trees.

    stag-make-demo-data [--root data/demo] [--num-train 300] [--num-val 50]
                        [--num-per-condition 50] [--num-val-per-condition 0]
                        [--size 512 256] [--seed 0] [--workers 2] [--no-color]
                        [--force]

Writes ROOT/cityscapes (leftImg8bit + gtFine, as mmseg's CityscapesDataset reads it) and
ROOT/acdc (rgb_anon + gt for fog, night, rain, snow, as stag_seg's ACDCDataset reads it).
Every image is rendered from its own seeded rng, so the files are byte-identical for the same
parameters; ROOT/MANIFEST.json records them and a rerun with the same ones does nothing.
"""
import argparse
import time

from stag_seg.demo import generate_demo_data


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='data/demo', help='output folder (default: data/demo)')
    parser.add_argument('--num-train', type=int, default=300,
                        help='Cityscapes train images (default: 300)')
    parser.add_argument('--num-val', type=int, default=50,
                        help='Cityscapes val images (default: 50)')
    parser.add_argument('--num-per-condition', type=int, default=50,
                        help='ACDC train images per condition (fog, night, rain, snow; '
                        'default: 50)')
    parser.add_argument('--num-val-per-condition', type=int, default=0,
                        help='ACDC val images per condition (default: none)')
    parser.add_argument('--size', type=int, nargs=2, default=(512, 256), metavar=('W', 'H'),
                        help='image width and height (default: 512 256)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of every image\'s rng (default: 0)')
    parser.add_argument('--workers', type=int, default=None,
                        help='rendering processes (default: 2, or 1 on a 1-core machine)')
    parser.add_argument('--no-color', action='store_true',
                        help='skip the colour label PNGs (gtFine_color, gt_labelColor)')
    parser.add_argument('--force', action='store_true',
                        help='render again even if the manifest matches')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    paths = generate_demo_data(args.root, num_train=args.num_train, num_val=args.num_val,
                               num_per_condition=args.num_per_condition,
                               size=tuple(args.size), seed=args.seed, num_workers=args.workers,
                               num_val_per_condition=args.num_val_per_condition,
                               write_color=not args.no_color, force=args.force)
    print(f'cityscapes: {paths.cityscapes}')
    print(f'acdc:       {paths.acdc}')
    print(f'manifest:   {paths.manifest}')
    print(f'took {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
