"""The ``tinyvgg`` command."""
from __future__ import annotations

import argparse
import json
import sys


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_model_options(parser):
    parser.add_argument("model", help="vgg11, vgg11_lrn, vgg13, vgg16c, vgg16, vgg19 "
                                      "(add _bn for batch norm) or a config letter A..E, A-LRN")
    parser.add_argument("--input-size", type=_positive_int, default=224, metavar="PIXELS",
                        help="height and width of the input image (default 224)")
    parser.add_argument("--in-channels", type=_positive_int, default=3)
    parser.add_argument("--num-classes", type=_positive_int, default=1000)
    parser.add_argument("--width", type=float, default=1.0,
                        help="channel multiplier, e.g. 0.25 (default 1)")
    parser.add_argument("--head", choices=("imagenet", "compact"), default="imagenet",
                        help="classifier: torchvision's 7x7x512-4096-4096 or a compact one "
                             "for small inputs")
    parser.add_argument("--batch-norm", action="store_true")
    parser.add_argument("--batch", type=_positive_int, default=1,
                        help="figures for a batch of this size (default: one image)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")


def _summary(args) -> int:
    import numpy as np

    from .models import vgg
    from .summary import summary
    model = vgg(args.model, num_classes=args.num_classes, batch_norm=args.batch_norm,
                width=args.width, head=args.head, in_channels=args.in_channels,
                init_weights=False, dtype=np.dtype(args.dtype))
    table = summary(model, (args.batch, args.in_channels, args.input_size, args.input_size))
    print(json.dumps(table.to_dict(), indent=1) if args.json else table)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tinyvgg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="gradient-check every op in float64 and train "
                                              "a small VGG-style network for a few steps")
    check.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="run the checks on the CPU (default) or on the GPU's kernels")
    summary = commands.add_parser("summary", help="per-layer activations, memory, parameters "
                                                  "and MACs of a VGG")
    _add_model_options(summary)
    summary.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.command == "check":
        from .backend import DeviceUnavailableError
        from .selfcheck import run
        try:
            return 0 if run(device=args.device) else 1
        except DeviceUnavailableError as error:
            parser.exit(2, f"tinyvgg check: {error}\n")
    if args.command == "summary":
        try:
            return _summary(args)
        except ValueError as error:
            parser.exit(2, f"tinyvgg summary: {error}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
