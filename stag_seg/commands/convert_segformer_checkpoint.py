"""Convert NVlabs' or HuggingFace's SegFormer checkpoint into one for stag-seg's NVlabs configs.

    stag-convert SRC DST [--config CONFIG] [--trust-checkpoint]

SRC: NVlabs' segformer.b5.1024x1024.city.160k.pth, or HuggingFace's
nvidia/segformer-b5-finetuned-cityscapes-1024-1024 pytorch_model.bin (or model.safetensors with
the safetensors package); the format is detected from the keys. DST loads into the model of
CONFIG (default configs/_base_/models/segformer_mit-b5-nvlabs_cityscapes.py) with no missing or
unexpected keys.
"""
import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='NVlabs .pth, HuggingFace .bin or .safetensors')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--config', help='model config the checkpoint is for (default: the '
                        'NVlabs SegFormer-B5 Cityscapes model config)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='SRC is not plain weights (torch.load weights_only=True refuses '
                        'it) but you trust it: unpickle it fully, which can run code')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from stag_seg.engine.cli import quiet_warnings
    from stag_seg.models.segformer_convert import (
        DEFAULT_CONFIG,
        ConversionError,
        convert_checkpoint,
    )

    quiet_warnings()                  # mmseg's deprecation notes on building the model
    try:
        meta = convert_checkpoint(args.src, args.dst, args.config or DEFAULT_CONFIG,
                                  trust=args.trust_checkpoint)
    except (ConversionError, FileNotFoundError) as e:
        sys.exit(f'convert_segformer_checkpoint: {e}')
    print(f'{args.dst}: {meta["num_keys"]} tensors from the {meta["source_format"]} checkpoint '
          f'{args.src}, checked against {meta["config"]}')


if __name__ == '__main__':
    main()
