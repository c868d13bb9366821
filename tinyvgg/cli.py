"""The ``tinyvgg`` command."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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

    from .tools.summary import vgg_summary
    table = vgg_summary(args.model, (args.batch, args.in_channels, args.input_size,
                                     args.input_size), dtype=np.dtype(args.dtype),
                        num_classes=args.num_classes, batch_norm=args.batch_norm,
                        width=args.width, head=args.head, in_channels=args.in_channels)
    print(json.dumps(table.to_dict(), indent=1) if args.json else table)
    return 0


def _add_train_options(parser):
    """Every TrainConfig field as a flag. Defaults are None here so that a resumed run can
    tell which flags were given; TrainConfig supplies the real defaults."""
    from .train import AUGMENTATIONS, SCHEDULES, TrainConfig
    d = TrainConfig.__dataclass_fields__
    add = parser.add_argument
    add("--model", help=f"vgg11, vgg13, vgg16, vgg19, vgg16c, vgg11_lrn, or A..E "
                        f"(default {d['model'].default})")
    add("--width", type=float, help=f"channel multiplier (default {d['width'].default})")
    add("--batch-norm", dest="batch_norm", action="store_const", const=True,
        help="batch norm after every conv (the default)")
    add("--no-batch-norm", dest="batch_norm", action="store_const", const=False)
    add("--head", choices=("compact", "imagenet"), help="classifier (default compact)")
    add("--dropout", type=float, help="drop probability in the classifier (default 0.5)")
    add("--label-smoothing", type=float,
        help="training targets (1 - e) one-hot + e / classes, as PyTorch's argument "
             "(default 0; the validation and test losses are always against the labels)")
    add("--dataset", choices=("mnist", "fashion-mnist", "folder"),
        help="mnist (default), fashion-mnist, or folder: an image folder per class")
    add("--data-dir", help="a directory of MNIST-format idx files, or the image-folder root "
                           "with train/ and test/ (or val/)")
    add("--image-size", type=_positive_int, help="network input size (default 32)")
    add("--scale-min", type=_positive_int, help="image folders: smallest training scale S")
    add("--scale-max", type=_positive_int, help="image folders: largest training scale S "
                                                "(images are stored at this size)")
    add("--val-size", type=int, help="training images held out for validation (default 5000)")
    add("--limit", type=_positive_int, help="train on only the first N images")
    add("--epochs", type=_positive_int, help=f"default {d['epochs'].default}")
    add("--batch-size", type=_positive_int,
        help=f"images per step, all ranks together: the global batch, split over the ranks "
             f"of mpiexec -n N (default {d['batch_size'].default})")
    add("--lr", type=float, help=f"learning rate (default {d['lr'].default})")
    add("--momentum", type=float, help="default 0.9")
    add("--weight-decay", type=float, help="L2 weight decay (default 5e-4)")
    add("--nesterov", action="store_const", const=True, help="Nesterov momentum")
    add("--schedule", choices=SCHEDULES, help="learning-rate schedule (default cosine); "
                                              "plateau divides by 10 when validation "
                                              "accuracy stops improving, as in the paper")
    add("--warmup-epochs", type=float,
        help="raise the learning rate linearly from lr/steps to the schedule's over the "
             "first W epochs' steps (fractions allowed; default 0: no warm-up)")
    add("--recalibrate-bn", dest="recalibrate_bn", action="store_const", const=True,
        help="after the last epoch, replace the batch-norm statistics by their average "
             "over the training images without augmentation (PyTorch's update_bn)")
    add("--swa-epochs", type=int, metavar="K",
        help="end on the mean of the weights after every step of the last K epochs "
             "(stochastic weight averaging), its batch-norm statistics recalibrated "
             "(default 0: the last weights)")
    add("--swa-lr", type=float, metavar="R",
        help="with --swa-epochs: the learning rate held during the averaged epochs "
             "(default: the schedule's)")
    add("--step-size", type=_positive_int, help="step schedule: epochs per division by 10")
    add("--patience", type=_positive_int, help="plateau: epochs without improvement")
    add("--restart-period", type=_positive_int,
        help="warm restarts: epochs in the first cycle (a snapshot is saved at each cycle's end)")
    add("--restart-mult", type=_positive_int, help="warm restarts: cycle growth factor")
    add("--augment", help=f"auto, none, or a comma list of {', '.join(AUGMENTATIONS)} "
                          f"(rgb and hue-sat for RGB images only; see the README)")
    add("--rotate-degrees", type=float,
        help=f"--augment rotate: the largest angle, in degrees, either way (default "
             f"{d['rotate_degrees'].default:g})")
    add("--device", choices=("cpu", "cuda"))
    add("--dtype", choices=("float32", "float64"))
    add("--seed", type=int)
    add("--prefetch", type=int, help="batches prepared ahead in a background thread "
                                     "(default 2; 0 turns it off)")
    add("--out", help="output directory (default runs/<dataset>-<model>-w<width>-s<seed>)")
    add("--sync-bn", dest="sync_bn", action="store_const", const=True,
        help="several ranks: batch norm with the statistics of the global batch, so the "
             "run matches one process (default: each rank's own part, as DDP)")
    add("--bucket-mb", type=float, help="several ranks: size of the gradient buckets summed "
                                        f"at once (default {d['bucket_mb'].default:g})")
    add("--no-overlap", dest="overlap", action="store_const", const=False,
        help="several ranks: sum the gradients after backward instead of during it")


def _train(args, parser) -> int:
    from .train import OutputWriteError, TrainConfig, TrainingDiverged, resumed_config, train
    from .backend import DeviceUnavailableError
    from .train import distributed
    given = {k: v for k, v in vars(args).items()
             if k in TrainConfig.__dataclass_fields__ and v is not None}
    # under mpiexec -n N: the ranks (or a clear error when mpi4py is missing), joined
    # before anything can fail, so that an error on one rank ends them all (as
    # "tinyvgg train: rank r of N: ...") instead of leaving the others waiting
    group = distributed.world()
    with distributed.ending_every_rank_on_error(
            group, "tinyvgg train", codes=((TrainingDiverged, 1), (OutputWriteError, 1),
                                           (ValueError, 2), (ImportError, 2),
                                           (FileNotFoundError, 2),
                                           (DeviceUnavailableError, 2))):
        if args.resume:
            config = resumed_config(args.resume, given)
        else:
            config = TrainConfig(**given)
        if group is not None:
            group.use_device(config.device)
        try:
            result = train(config, resume=args.resume, progress=not args.no_progress,
                           group=group)
        except (TrainingDiverged, OutputWriteError) as error:
            if group is not None:
                raise
            print(f"tinyvgg train: {error}", file=sys.stderr)
            return 1
    return 130 if result.status == "interrupted" else 0


def _require_matches(paths) -> None:
    """A path that does not exist but holds * ? or [ is a pattern the shell matched to
    no file; saying so beats "no such file"."""
    for path in paths:
        if any(c in path for c in "*?[") and not Path(path).exists():
            raise FileNotFoundError(f"no file matches {path} (a shell passes on a pattern "
                                    f"that matches nothing as it is)")


def _evaluate(args) -> int:
    from .io.checkpoint import require_checkpoint_file
    from .train import evaluate_checkpoints
    _require_matches(args.checkpoints)
    for path in args.checkpoints:
        require_checkpoint_file(path)
    if args.ensemble and len(args.checkpoints) < 2:
        raise ValueError("--ensemble averages several checkpoints; give at least two")
    result = evaluate_checkpoints(args.checkpoints, dataset=args.dataset,
                                  data_dir=args.data_dir, split=args.split,
                                  batch_size=args.batch_size, device=args.device,
                                  flip=args.flip)
    if not args.ensemble:
        result.pop("ensemble", None)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['dataset']} {result['split']} ({result['images']} images"
          f"{', each also mirrored' if result['flip'] else ''})")
    for row in result["members"]:
        print(f"  {100 * row['accuracy']:6.2f}%  loss {row['loss']:.4f}  {row['checkpoint']}")
    if "ensemble" in result:
        best = max(row["accuracy"] for row in result["members"])
        e = result["ensemble"]
        print(f"  {100 * e['accuracy']:6.2f}%  loss {e['loss']:.4f}  ensemble of "
              f"{len(result['members'])} (mean softmax); best member {100 * best:.2f}%")
    return 0


def _predict(args) -> int:
    from .train import predict_files
    checkpoints = [args.checkpoint] + list(args.ensemble or [])
    _require_matches(checkpoints + args.images)
    results = predict_files(checkpoints, args.images, device=args.device, invert=args.invert,
                            top=args.top)
    for row in results:
        if row["warning"]:
            print(f"tinyvgg predict: warning: {row['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for row in results:
        guesses = ", ".join(f"{g['class']} {100 * g['probability']:.1f}%" for g in row["top"])
        print(f"{row['file']}: {guesses}")
    return 0


def _bench(args, parser) -> int:
    if args.device == "cuda":
        parser.exit(2, "tinyvgg bench: --device cuda runs benchmarks/bench_gpu.py on a GPU "
                       "machine: python3 benchmarks/bench_gpu.py\n")
    from .bench import run
    from .ops.conv_cpu import CONV3X3_CPU_CHOICES
    names = None
    if args.implementations:
        names = [n.strip() for n in args.implementations.split(",") if n.strip()]
        unknown = [n for n in names if n not in CONV3X3_CPU_CHOICES]
        if unknown:
            parser.exit(2, f"tinyvgg bench: unknown implementation {', '.join(unknown)}; "
                           f"choose from {', '.join(CONV3X3_CPU_CHOICES)}\n")
    _writing_to("bench", args.out, parser,
                lambda: run(args.out, names, args.warmup, args.repeats, args.quick))
    return 0


def _writing_to(command, out, parser, run):
    """``run()``, whose files go to ``out``: a folder that cannot take them, found before
    the work or by a disk that fills up during it, ends the command with one line."""
    import errno

    from .io.fileio import FolderNotWritableError
    try:
        return run()
    except FolderNotWritableError as error:
        reason = error.reason
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        reason = error.strerror
    parser.exit(2, f"tinyvgg {command}: cannot write to --out {out}: {reason}\n")


def build_parser() -> argparse.ArgumentParser:
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
    train = commands.add_parser("train", help="train a VGG on MNIST, Fashion-MNIST or an "
                                              "image folder, with checkpoints and curves")
    _add_train_options(train)
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue a run exactly from its checkpoint.npz")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate = commands.add_parser("eval", help="test accuracy of checkpoints, and of their "
                                                "ensemble with --ensemble")
    evaluate.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    evaluate.add_argument("--ensemble", action="store_true",
                          help="also score the average of the checkpoints' softmax outputs")
    evaluate.add_argument("--dataset", choices=("mnist", "fashion-mnist", "folder"),
                          help="default: the one the checkpoint was trained on")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--split", choices=("train", "test"), default="test")
    evaluate.add_argument("--flip", action="store_true",
                          help="average each model's softmax over the image and its mirror "
                               "(the paper's test-time flips; models trained with flips only)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    evaluate.add_argument("--json", action="store_true")
    predict = commands.add_parser("predict", help="classify image files with a checkpoint")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--ensemble", nargs="+", metavar="CHECKPOINT",
                         help="more checkpoints whose softmax outputs are averaged in")
    predict.add_argument("--invert", action="store_true",
                         help="dark strokes on light paper: invert to MNIST's white on black")
    predict.add_argument("--top", type=_positive_int, default=3)
    predict.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    predict.add_argument("--json", action="store_true")
    from .bench import DEFAULT_OUT as BENCH_OUT
    bench = commands.add_parser("bench", help="the conv3x3 ladder and the VGG-16 training "
                                              "step against PyTorch, with plots")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    bench.add_argument("--implementations", help="comma list of conv3x3 implementations "
                                                 "(default: every one but the naive loops, "
                                                 "which run on one small layer)")
    bench.add_argument("--repeats", type=_positive_int, default=5)
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--quick", action="store_true", help="1 warm-up run, 3 repeats")
    bench.add_argument("--out", default=str(BENCH_OUT),
                       help=f"folder for the JSON, Markdown and PNG files (default {BENCH_OUT}; "
                            f"the committed results are written with --out benchmarks/results)")
    experiment = commands.add_parser("experiment", help="the lecture experiments on backprop "
                                                        "(initialisation, receptive fields, "
                                                        "memory, ...): a table and a PNG each")
    experiment.add_argument("name", nargs="?", help="the experiment; leave out to list them")
    experiment.add_argument("--out", help="folder for the figures (default "
                                          "runs/experiment-NAME)")
    experiment.add_argument("--seed", type=int, default=0)
    experiment.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    experiment.add_argument("--json", action="store_true",
                            help="also print the returned numbers as JSON")
    experiment.add_argument("--dataset", choices=("mnist", "fashion-mnist", "folder"),
                            help="augment: the data set whose images it shows (default mnist)")
    experiment.add_argument("--data-dir", help="augment: as for tinyvgg train")
    return parser


def _experiment(args, parser) -> int:
    from .backend import DeviceUnavailableError
    from .experiments import EXPERIMENTS, default_out, run
    if args.name is None:
        width = max(map(len, EXPERIMENTS))
        for name, (_, _, teaches) in EXPERIMENTS.items():
            print(f"{name:<{width}}  {teaches}")
        return 0
    out = default_out(args.name) if args.out is None else args.out
    options = {key: getattr(args, key) for key in ("dataset", "data_dir")
               if getattr(args, key) is not None}
    try:
        result = _writing_to("experiment", out, parser,
                             lambda: run(args.name, out, seed=args.seed, device=args.device,
                                         **options))
    except (ValueError, ImportError, FileNotFoundError, DeviceUnavailableError) as error:
        parser.exit(2, f"tinyvgg experiment: {error}\n")
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    for figure in result.get("figures", []):
        print(f"wrote {figure}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # one of several ranks must not leave the others waiting
        from .train.distributed import abort_if_launched
        abort_if_launched(stop.code)
        raise
    if args.command == "bench":
        return _bench(args, parser)
    if args.command == "experiment":
        return _experiment(args, parser)
    if args.command in ("train", "eval", "predict"):
        from .backend import DeviceUnavailableError
        from .io.checkpoint import CheckpointError
        run = {"train": lambda: _train(args, parser), "eval": lambda: _evaluate(args),
               "predict": lambda: _predict(args)}[args.command]
        try:
            return run()
        except KeyboardInterrupt:  # before the first batch, or a second Ctrl-C
            parser.exit(130, f"tinyvgg {args.command}: interrupted; checkpoints written "
                             f"before stay as they were\n")
        except (ValueError, FileNotFoundError, ImportError, CheckpointError,
                DeviceUnavailableError) as error:
            # the library's messages often start with the command's name too: say it once
            message = str(error).removeprefix(f"{args.command}: ")
            parser.exit(2, f"tinyvgg {args.command}: {message}\n")
    if args.command == "check":
        from .backend import DeviceUnavailableError
        from .tools.selfcheck import run
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
