"""Training a VGG on real images: the loop, its validation, its checkpoints and its records.

One run is a :class:`TrainConfig`. :func:`train` builds the data, the model,
SGD and the schedule from it, then repeats for each epoch::

    for each mini-batch (x, y):                 # shuffled and augmented per (seed, epoch)
        loss = cross_entropy(model(x), y)
        model.zero_grad(); loss.backward()      # the engine's backprop
        optimizer.step()                        # SGD with momentum and weight decay
    validate; step the schedule; write metrics, curves and a checkpoint

Exact resumption rests on one rule: every random draw (the shuffle, each
batch's augmentation, each batch's dropout masks) is a pure function of
``(seed, epoch, batch)``. A checkpoint therefore only needs the weights,
the optimiser and scheduler state and the position ``(epoch, batch)``;
``--resume`` skips to that position and continues bit for bit.

Ctrl-C is caught between batches: the run saves a checkpoint at the current
batch and stops (a second Ctrl-C stops at once); during validation or the
final test it stops when that pass ends. A training or validation loss that
turns NaN or infinite, or weights or batch-norm statistics that do, stop the
run with :class:`TrainingDiverged`: every checkpoint is checked before it is
written, so the one kept is always finite.

Resuming with a larger ``--epochs`` continues the schedule where it stands
(constant, step, plateau, warm-restarts); a cosine schedule, which reaches 0
at its planned end, cannot be extended. Resuming a finished run changes
nothing.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from .. import backend
from .. import functional as F
from .. import optim, random
from ..io.checkpoint import (RESUME_META, CheckpointError, load_checkpoint,
                         read_checkpoint_meta, save_checkpoint)
from ..data import transforms as T
from ..data.datasets import load_dataset
from ..data.loader import DataLoader
from ..io.fileio import (atomic_write, remove_stale_temporaries, require_file,
                     writable_folder)
from ..models import vgg
from ..io.plotting import pyplot, save_png
from ..models.imagenet import softmax
from ..tensor import no_grad, tensor

DIGIT_DATASETS = ("mnist", "fashion-mnist")
AUGMENTATIONS = ("crop", "flip", "jitter", "rgb", "scale")
SCHEDULES = ("constant", "step", "plateau", "cosine", "warm-restarts")
#: schedules that a resumed run can carry past its planned number of epochs
EXTENDABLE_SCHEDULES = ("constant", "step", "plateau", "warm-restarts")
#: what a run writes into its folder (fnmatch patterns), for removing stale temporaries
RUN_FILES = ("checkpoint.npz", "snapshot-epoch*.npz", "metrics.csv", "metrics.json",
             "curves.png", "model.npz", "write-probe")


class TrainingDiverged(RuntimeError):
    """The training loss, the validation loss, the weights or the batch-norm statistics
    became NaN or infinite."""


class OutputWriteError(OSError):
    """A file of the run (the output folder, a checkpoint, the metrics, the curves)
    could not be written; the message names it and says why."""


def non_finite_state(model_state, optimizer_state) -> str:
    """The names of the floating-point arrays of a model's and an optimiser's state that
    hold a NaN or an infinity ("features.5.running_var, ... and 4 more"), or ""."""
    def bad(arrays):
        return [key for key, value in arrays.items()
                if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all()]
    names = bad(model_state) + [f"optimizer/{key}" for key in bad(optimizer_state)]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def require_finite(path, checkpoint) -> None:
    """Refuse a checkpoint whose weights, batch-norm statistics or SGD velocities are not
    all finite (written by a run that diverged before they were checked)."""
    bad = non_finite_state(checkpoint.model, checkpoint.optimizer)
    if bad:
        raise CheckpointError(f"checkpoint {path}: {bad} hold NaN or infinite values (the "
                              f"run that wrote it had diverged); it cannot be used")


#: the types TrainConfig's annotations name, and how messages name them
_CONFIG_TYPES = {"str": (str, "a string"), "int": (int, "an integer"),
                 "float": ((int, float), "a number"), "bool": (bool, "True or False"),
                 "None": (type(None), "None")}


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in every checkpoint and in metrics.json."""
    model: str = "vgg11"
    width: float = 0.25
    batch_norm: bool = True
    head: str = "compact"
    dropout: float = 0.5
    dataset: str = "mnist"
    data_dir: str | None = None
    image_size: int = 32           # network input; digits (28x28) are padded to it
    scale_min: int | None = None   # image folders: shorter side S in [scale_min, scale_max]
    scale_max: int | None = None
    val_size: int = 5000           # held out from the training split for validation
    limit: int | None = None       # use only the first N training images (quick trials)
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    step_size: int | None = None   # step: epochs between divisions by 10
    patience: int = 2              # plateau: epochs without improvement before dividing
    restart_period: int | None = None  # warm restarts: epochs of the first cycle
    restart_mult: int = 1
    augment: str = "auto"
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    prefetch: int = 2
    out: str | None = None

    def __post_init__(self):
        for name in ("data_dir", "out"):  # a Path works, and is stored as JSON's string
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        self.validate()

    def validate(self):
        def fail(message):
            raise ValueError(f"train: {message}")
        self._check_types()
        if self.epochs < 1:
            fail(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            fail(f"batch size must be at least 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            fail(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            fail(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            fail(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.dropout < 1:
            fail(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.width > 0:
            fail(f"width must be positive, got {self.width}")
        if self.schedule not in SCHEDULES:
            fail(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.dtype not in ("float32", "float64"):
            fail(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.val_size < 0:
            fail(f"validation size must be >= 0, got {self.val_size}")
        if self.schedule == "plateau" and self.val_size == 0:
            fail("the plateau schedule watches validation accuracy: it needs --val-size > 0")
        if self.limit is not None and self.limit < 1:
            fail(f"limit must be positive, got {self.limit}")
        if self.image_size < 32:
            fail(f"image size must be at least 32 (five 2x2 max-pools), got {self.image_size}")
        if self.nesterov and self.momentum == 0:
            fail("Nesterov momentum needs --momentum > 0")
        parse_augment(self.augment, self.dataset)
        backend.check_device(self.device)

    def _check_types(self):
        """Each field holds the type its annotation names (an int does for a float; a bool
        is no number): a run's settings may come from a JSON file."""
        for f in fields(self):
            value, allowed = getattr(self, f.name), f.type.split(" | ")
            kinds = tuple(_CONFIG_TYPES[name][0] for name in allowed)
            if not isinstance(value, kinds) or (isinstance(value, bool) and "bool" not in allowed):
                expected = " or ".join(_CONFIG_TYPES[name][1] for name in allowed)
                raise TypeError(f"train: {f.name} must be {expected}, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def output_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        bn = "_bn" if self.batch_norm else ""
        return Path("runs") / f"{self.dataset}-{self.model}{bn}-w{self.width:g}-s{self.seed}"


def parse_augment(text: str, dataset: str) -> tuple[str, ...]:
    """``auto``, ``none`` or a comma list of crop, flip, jitter, rgb, scale."""
    if text == "auto":
        if dataset == "mnist":
            return ("crop",)  # no flips: a mirrored 2 is not a 2
        if dataset == "fashion-mnist":
            return ("crop", "flip")
        return ("scale", "flip", "rgb")
    if text == "none":
        return ()
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in chosen if part not in AUGMENTATIONS]
    if unknown or not chosen:
        raise ValueError(f"train: unknown augmentation {', '.join(unknown) or repr(text)}; "
                         f"use auto, none, or a comma list of {', '.join(AUGMENTATIONS)}")
    return chosen


# --- data ---------------------------------------------------------------------------------

def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1]."""
    n = images.shape[0]
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, n, 4096):  # in chunks, so a big set is not copied to float at once
        chunk = images[start:start + 4096].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk ** 2).sum(axis=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return mean.tolist(), std.tolist()


def input_pipelines(config: TrainConfig, stored_size: int, mean, std):
    """(training transform, evaluation transform) from stored images to network inputs."""
    size = config.image_size
    augment = parse_augment(config.augment, config.dataset)
    pad = max(0, (size - stored_size) // 2)
    train, evaluate = [], []
    if pad:
        train.append(T.Pad(pad))
        evaluate.append(T.Pad(pad))
    padded = stored_size + 2 * pad
    if "scale" in augment:
        low = config.scale_min or padded
        high = config.scale_max or padded
        train.append(T.RandomScaleCrop(size, low, high))
    elif "crop" in augment:
        # shifts of up to the padding digits already have (2 pixels), else 4 as for CIFAR
        train.append(T.RandomCrop(size, padding=(pad or 4) if padded == size else 0))
    elif padded != size:
        train.append(T.CenterCrop(size))
    if padded != size:
        evaluate.append(T.CenterCrop(size))
    if "flip" in augment:
        train.append(T.RandomHorizontalFlip())
    if "jitter" in augment:
        train.append(T.ColorJitter(brightness=0.2, contrast=0.2))
    if "rgb" in augment:
        train.append(T.RGBShift(0.1))
    train.append(T.Normalize(mean, std))
    evaluate.append(T.Normalize(mean, std))
    return T.Compose(train), T.Compose(evaluate)


@dataclass
class RunData:
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    classes: list
    in_channels: int
    stored_size: int
    mean: list
    std: list


def prepare_data(config: TrainConfig) -> RunData:
    stored = config.scale_max or config.image_size
    full = load_dataset(config.dataset, "train", config.data_dir, size=stored)
    test = load_dataset(config.dataset, "test", config.data_dir, size=stored)
    if config.val_size >= len(full):
        raise ValueError(f"train: --val-size {config.val_size} leaves no training images "
                         f"({config.dataset} has {len(full)})")
    if config.val_size:
        train_set, val_set = full.split(config.val_size, seed=config.seed)
    else:
        train_set, val_set = full, None
    if config.limit is not None:
        train_set = train_set.subset(np.arange(min(config.limit, len(train_set))))
    if train_set.images.shape[2] != train_set.images.shape[3]:
        raise ValueError(f"train: expected square images, got {train_set.images.shape[2:]}")
    mean, std = channel_statistics(train_set.images)
    train_tf, eval_tf = input_pipelines(config, train_set.images.shape[2], mean, std)
    dtype = np.dtype(config.dtype)
    eval_batch = max(config.batch_size, 256)

    def evaluation_loader(dataset):
        return DataLoader(dataset, eval_batch, shuffle=False, seed=config.seed,
                          transform=eval_tf, prefetch=config.prefetch, dtype=dtype)
    return RunData(
        train=DataLoader(train_set, config.batch_size, shuffle=True, seed=config.seed,
                         drop_last=False, transform=train_tf, prefetch=config.prefetch,
                         dtype=dtype),
        val=evaluation_loader(val_set) if val_set is not None else None,
        test=evaluation_loader(test),
        classes=list(full.classes), in_channels=full.images.shape[1],
        stored_size=full.images.shape[2], mean=mean, std=std)


# --- model and evaluation -----------------------------------------------------------------

def build_model(config: TrainConfig, num_classes: int, in_channels: int):
    return vgg(config.model, num_classes=num_classes, batch_norm=config.batch_norm,
               dropout=config.dropout, width=config.width, head=config.head,
               in_channels=in_channels, dtype=np.dtype(config.dtype))


def predict_probabilities(model, loader: DataLoader, device: str = "cpu",
                          flip: bool = False) -> np.ndarray:
    """Softmax outputs (N, classes) of ``model`` in eval mode over one pass of ``loader``;
    with ``flip``, averaged with those of the mirrored images (the paper's test-time
    augmentation)."""
    was_training = model.training
    model.eval()
    outputs = []
    with no_grad():
        for images, _ in loader.batches(0):
            probabilities = softmax(backend.to_numpy(model(tensor(images, device=device)).data))
            if flip:
                mirrored = np.ascontiguousarray(images[..., ::-1])
                probabilities = (probabilities + softmax(backend.to_numpy(
                    model(tensor(mirrored, device=device)).data))) / 2
            outputs.append(probabilities)
    model.train(was_training)
    return np.concatenate(outputs)


def loader_labels(loader: DataLoader) -> np.ndarray:
    return np.asarray(loader.dataset.labels)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and mean cross-entropy of predicted probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    return {"accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
            "loss": float(-np.log(np.maximum(picked, 1e-300)).mean())}


# --- the loop -----------------------------------------------------------------------------

def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The dropout seed of one batch: a pure function of where the run is."""
    return int(np.random.SeedSequence([seed, epoch, index, 0xD0]).generate_state(
        1, np.uint64)[0])


class _InterruptFlag:
    """Turns the first Ctrl-C into a request to stop after the current batch."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class RunResult:
    status: str              # "finished", "interrupted" or "complete" (resumed, nothing to do)
    epoch: int               # completed epochs
    history: list
    test: dict | None
    output_dir: Path
    checkpoint: Path | None
    message: str = ""


METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                  "images_per_second", "seconds")


def write_metrics(out: Path, config: TrainConfig, history: list, test: dict | None,
                  extra: dict | None = None) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    atomic_write(out / "metrics.csv", text.getvalue())
    document = {"config": config.to_dict(), "history": history, "test": test, **(extra or {})}
    atomic_write(out / "metrics.json", json.dumps(document, indent=1) + "\n")


def plot_curves(out: Path, history: list, title: str) -> Path | None:
    """Loss, accuracy and learning rate per epoch as ``curves.png`` (needs matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            axes[0].plot(epochs, values, marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        values = [None if row.get(key) is None else 100 * row[key] for row in history]
        if any(v is not None for v in values):
            axes[1].plot(epochs, values, marker="o", label=label)
    axes[2].plot(epochs, [row["lr"] for row in history], marker="o")
    for axis, name in zip(axes, ("cross-entropy", "accuracy (%)", "learning rate")):
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, out / "curves.png")


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="batch", leave=True, dynamic_ncols=True)


def train(config: TrainConfig, resume=None, progress: bool = True, log=print,
          on_batch=None) -> RunResult:
    """Run (or continue, from the checkpoint file ``resume``) one training run.

    ``on_batch(epoch, index, loss)`` is called after every optimiser step.
    """
    began = time.perf_counter()
    meta = None
    out = config.output_dir
    if resume is not None:
        checkpoint = load_run_checkpoint(resume)
        meta = checkpoint.meta
        if _check_resume(config, meta, resume):
            message = _complete_message(resume, meta)
            log(message)
            return RunResult("complete", meta["epoch"], meta["history"], meta["test"], out,
                             Path(resume), message)
    data = prepare_data(config)  # a wrong --data-dir leaves no empty run folder behind
    _prepare_output_folder(config, out, log)
    random.manual_seed(config.seed)
    model = build_model(config, len(data.classes), data.in_channels).to(config.device)
    optimizer = optim.SGD(model.named_parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.nesterov)
    scheduler = optim.make_scheduler(config.schedule, optimizer, config.epochs,
                                     step_size=config.step_size, patience=config.patience,
                                     T_0=config.restart_period, T_mult=config.restart_mult)
    epoch, start_batch, history, sums = 0, 0, [], _fresh_sums()
    earlier_seconds = 0.0  # wall time of the sessions before a resume
    last_good = None  # (path, epoch, batch) of the newest checkpoint known to be finite
    if meta is not None:
        earlier_seconds = meta.get("wall_seconds", 0.0)
        model.load_state_dict(checkpoint.model)
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(meta["scheduler"])
        epoch, start_batch = meta["epoch"], meta["batch"]
        history, sums = meta["history"], meta["sums"]
        last_good = (Path(resume), epoch, start_batch)
        log(_resume_line(resume, config, meta, optimizer.lr))
    restarts = set(scheduler.restart_epochs(config.epochs)) if hasattr(
        scheduler, "restart_epochs") else set()
    info = {"classes": data.classes, "in_channels": data.in_channels,
            "stored_size": data.stored_size, "mean": data.mean, "std": data.std}

    def checkpoint_meta(epoch_, batch_):
        return {"config": config.to_dict(), "epoch": epoch_, "batch": batch_,
                "scheduler": scheduler.state_dict(), "history": history, "sums": sums,
                "data": info, "wall_seconds": wall_seconds()}

    def wall_seconds():
        return earlier_seconds + time.perf_counter() - began

    def kept_checkpoint(resumable: bool = True) -> str:
        if last_good is None:
            return "no checkpoint of this run has been written"
        path, epoch_, batch_ = last_good
        kept = f"the last checkpoint, {path} ({_position(epoch_, batch_)}), is whole"
        if resumable:
            kept += f"; continue with: tinyvgg train --resume {shlex.quote(str(path))}"
        return kept

    def diverged(what: str) -> TrainingDiverged:
        # A resumed run keeps its learning rate and repeats its steps bit for bit, so
        # resuming would diverge again: the advice is a fresh run with a lower one.
        lower = config.lr / 10
        fresh = _fresh_folder(out, f"lr{lower:g}")
        if last_good is None:
            kept = "No good checkpoint of this run was written. "
        else:
            kept = (f"The last good checkpoint is {last_good[0]} "
                    f"({_position(*last_good[1:])}), but a resumed run keeps its learning "
                    f"rate. ")
        return TrainingDiverged(
            f"{what}: training stopped. {kept}Start over with a lower --lr (this run's is "
            f"{config.lr:g}): {command_line(replace(config, lr=lower))} "
            f"--out {shlex.quote(str(fresh))}")

    def write(what, writer):
        """Run ``writer()``, which writes the file(s) ``what``; a failure says which and why."""
        try:
            return writer()
        except OSError as error:
            raise OutputWriteError(f"cannot write {what}: {error.strerror or error}; "
                                   f"{kept_checkpoint()}") from None

    def save(path, epoch_, batch_, when: str, test=None):
        """Write a checkpoint of the run at (epoch_, batch_), once its state is checked."""
        model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
        bad = non_finite_state(model_state, optimizer_state)
        if bad:
            raise diverged(f"{bad} became NaN or infinite {when}")
        meta_ = checkpoint_meta(epoch_, batch_)
        if test is not None:
            meta_["test"] = test
        return write(path, lambda: save_checkpoint(path, model_state, optimizer_state, meta_))

    latest = out / "checkpoint.npz"
    metrics_files = f"{out / 'metrics.csv'} and metrics.json"
    batches_per_epoch = len(data.train)
    if meta is None:
        log(f"{command_line(config)}\n  {model.name}: "
            f"{sum(p.data.size for p in model.parameters()):,} parameters; "
            f"{len(data.train.dataset):,} training, "
            f"{0 if data.val is None else len(data.val.dataset):,} validation and "
            f"{len(data.test.dataset):,} test images; output in {out}")
    model.train()
    with _InterruptFlag() as interrupt:
        while epoch < config.epochs:
            bar = _progress_bar(batches_per_epoch, f"epoch {epoch + 1}/{config.epochs}",
                                progress)
            if bar is not None:
                bar.update(start_batch)
            started = time.perf_counter()
            images_seen = 0
            batches = data.train.batches(epoch, start=start_batch)
            for index, (images, labels) in enumerate(batches, start=start_batch):
                random.manual_seed(batch_seed(config.seed, epoch, index))
                if scheduler.per_batch:
                    scheduler.step(epoch + index / batches_per_epoch)
                if not optimizer.lr > 0:
                    if bar is not None:
                        bar.close()
                    raise ValueError(
                        f"the learning rate is {optimizer.lr:g} at epoch {epoch + 1}, batch "
                        f"{index} ({config.schedule} schedule): a step at learning rate 0 "
                        f"would change only batch-norm statistics, so training stops here; "
                        f"{kept_checkpoint(resumable=False)}")
                logits = model(tensor(images, device=config.device))
                loss = F.cross_entropy(logits, labels)
                model.zero_grad()
                loss.backward()
                loss_value = float(loss.item())
                if not math.isfinite(loss_value):
                    if bar is not None:
                        bar.close()
                    raise diverged(f"loss became {loss_value} at epoch {epoch + 1}, "
                                   f"batch {index}")
                optimizer.step()
                predicted = backend.to_numpy(logits.data).argmax(axis=1)
                sums["loss"] += loss_value * len(labels)
                sums["correct"] += int((predicted == labels).sum())
                sums["count"] += len(labels)
                images_seen += len(labels)
                if bar is not None:
                    rate = images_seen / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.4f}",
                                    acc=f"{100 * sums['correct'] / sums['count']:.2f}%",
                                    img_s=f"{rate:.0f}", refresh=False)
                    bar.update(1)
                if on_batch is not None:
                    on_batch(epoch, index, loss_value)
                if interrupt.requested:
                    if bar is not None:
                        bar.close()
                    path = save(latest, epoch, index + 1,
                                f"by epoch {epoch + 1}, batch {index + 1} (at Ctrl-C)")
                    message = (f"interrupted at epoch {epoch + 1}, batch {index + 1}; saved "
                               f"{path}. Continue with: tinyvgg train --resume "
                               f"{shlex.quote(str(path))}")
                    log(message)
                    return RunResult("interrupted", epoch, history, None, out, path, message)
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - started
            row = {"epoch": epoch + 1, "lr": optimizer.lr,
                   "train_loss": sums["loss"] / max(sums["count"], 1),
                   "train_accuracy": sums["correct"] / max(sums["count"], 1),
                   "val_loss": None, "val_accuracy": None,
                   "images_per_second": images_seen / max(seconds, 1e-9),
                   "seconds": seconds}
            if data.val is not None:
                val = scores(predict_probabilities(model, data.val, config.device),
                             loader_labels(data.val))
                row["val_loss"], row["val_accuracy"] = val["loss"], val["accuracy"]
            log(_epoch_line(row))
            if row["val_loss"] is not None and not math.isfinite(row["val_loss"]):
                raise diverged(f"validation loss became {row['val_loss']} after epoch "
                               f"{epoch + 1}")
            history.append(row)
            if not scheduler.per_batch:
                if scheduler.needs_metric:
                    scheduler.step(row["val_accuracy"])
                else:
                    scheduler.step()
            epoch, start_batch, sums = epoch + 1, 0, _fresh_sums()
            save(latest, epoch, 0, f"by the end of epoch {epoch}")
            last_good = (latest, epoch, 0)
            if epoch in restarts:
                snapshot = out / f"snapshot-epoch{epoch:03d}.npz"
                save(snapshot, epoch, 0, f"by the end of epoch {epoch}")
                log(f"end of a warm-restart cycle: snapshot {snapshot}")
            write(metrics_files, lambda: write_metrics(
                out, config, history, None, {"data": info, "wall_seconds": wall_seconds()}))
            write(out / "curves.png", lambda: plot_curves(out, history, _title(config)))
            if interrupt.requested:  # Ctrl-C during the validation or the writes
                message = (f"interrupted after epoch {epoch}; saved {latest}. Continue "
                           f"with: tinyvgg train --resume {shlex.quote(str(latest))}")
                log(message)
                return RunResult("interrupted", epoch, history, None, out, latest, message)
        # the flag is still watched here: a Ctrl-C during the test stops once it ends
        test_probabilities = predict_probabilities(model, data.test, config.device)
        if interrupt.requested:
            path = last_good[0]
            message = (f"interrupted during the final test; {path} holds all "
                       f"{_epochs(epoch)}. Run the test with: tinyvgg train --resume "
                       f"{shlex.quote(str(path))}")
            log(message)
            return RunResult("interrupted", epoch, history, None, out, path, message)
    test = scores(test_probabilities, loader_labels(data.test))
    test["images"] = int(len(test_probabilities))
    write(metrics_files, lambda: write_metrics(
        out, config, history, test, {"data": info, "wall_seconds": wall_seconds(),
                                     "command": command_line(config)}))
    write(out / "curves.png", lambda: plot_curves(out, history, _title(config)))
    from ..io.serialization import save as save_weights
    write(out / "model.npz", lambda: save_weights(model, out / "model.npz"))
    # written last: a checkpoint holding the test result marks the run as complete
    save(latest, epoch, 0, "by the end of the run", test=test)
    log(f"test accuracy {100 * test['accuracy']:.2f}% ({test['images']} images), "
        f"loss {test['loss']:.4f}; weights in {out / 'model.npz'}")
    return RunResult("finished", epoch, history, test, out, latest)


def _epochs(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"


def _position(epoch: int, batch: int) -> str:
    return f"after epoch {epoch}" if batch == 0 else f"epoch {epoch + 1}, batch {batch}"


def _fresh_folder(out: Path, suffix: str) -> Path:
    """A folder beside ``out`` named after it and ``suffix`` that does not exist yet, for
    the advice to start a new run."""
    base = out if out.name not in ("", ".", "..") else out.resolve()
    candidate, number = base.with_name(f"{base.name}-{suffix}"), 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{suffix}-{number}")
        number += 1
    return candidate


def _prepare_output_folder(config: TrainConfig, out: Path, log) -> None:
    """Make sure the run can write into ``out`` before the first batch is trained,
    and remove the temporary files an earlier killed write left there."""
    try:
        writable_folder(out)
        removed = remove_stale_temporaries(out, RUN_FILES)
    except OSError as error:
        where = f"--out {out}" if config.out else \
            f"the output folder {out} (choose another with --out)"
        raise OutputWriteError(f"cannot write to {where}: {error.strerror or error}") from None
    if removed:
        log(f"removed {len(removed)} temporary file(s) that an interrupted write left in "
            f"{out}: {', '.join(path.name for path in removed)}")


def _check_resume(config: TrainConfig, meta: dict, path) -> bool:
    """Whether the checkpoint ``path`` ends a complete run of ``config.epochs`` epochs
    (nothing to do); refuses an ``--epochs`` the run cannot continue to."""
    done, batch = meta["epoch"], meta["batch"]
    needed = done + (1 if batch else 0)
    if config.epochs < needed:
        raise ValueError(f"--epochs {config.epochs} ends before where checkpoint {path} "
                         f"stands ({_position(done, batch)}); give --epochs {needed} or more")
    schedule = meta["scheduler"]
    if schedule.get("kind") == "cosine" and config.epochs > schedule["T_max"]:
        fresh = _fresh_folder(config.output_dir, f"{config.epochs}epochs")
        raise ValueError(
            f"--epochs {config.epochs}: this run's cosine schedule takes the learning rate "
            f"to 0 at the end of its {_epochs(schedule['T_max'])} (past them it would rise "
            f"again), so it cannot be extended; a resumed run can extend the schedules "
            f"{', '.join(EXTENDABLE_SCHEDULES)}. To train {_epochs(config.epochs)} with a "
            f"cosine schedule, start over: {command_line(config)} "
            f"--out {shlex.quote(str(fresh))}")
    return done == config.epochs and batch == 0 and meta.get("test") is not None


def _complete_message(path, meta: dict) -> str:
    test = meta["test"]
    if meta["scheduler"].get("kind") in EXTENDABLE_SCHEDULES:
        longer = "a larger --epochs continues it"
    else:
        longer = "its cosine schedule has ended, so training longer needs a new run"
    return (f"the run saved in {path} is complete: {_epochs(meta['epoch'])}, test accuracy "
            f"{100 * test['accuracy']:.2f}%; nothing to do ({longer})")


def _resume_line(path, config: TrainConfig, meta: dict, lr: float) -> str:
    epoch, batch = meta["epoch"], meta["batch"]
    if epoch == config.epochs:
        return f"resuming {path}: all {_epochs(epoch)} are trained; the final test is left"
    line = f"resuming {path} at epoch {epoch + 1}, batch {batch}"
    planned = meta["config"]["epochs"]
    if config.epochs != planned:
        line += (f"; --epochs {config.epochs} (the run had {planned}): the "
                 f"{config.schedule} schedule carries on from learning rate {lr:.4g}")
    return line


def command_line(config: TrainConfig) -> str:
    """The ``tinyvgg train`` command that makes this configuration (flags that differ
    from the defaults)."""
    default = TrainConfig()
    words = ["tinyvgg", "train"]
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "out" or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, shlex.quote(f"{value:g}" if isinstance(value, float) else str(value))]
    return " ".join(words)


def _fresh_sums() -> dict:
    return {"loss": 0.0, "correct": 0, "count": 0}


def _title(config: TrainConfig) -> str:
    bn = " + BN" if config.batch_norm else ""
    return f"{config.model}{bn}, width {config.width:g}, on {config.dataset}"


def _epoch_line(row: dict) -> str:
    line = (f"epoch {row['epoch']:>3}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"acc {100 * row['train_accuracy']:.2f}%")
    if row["val_accuracy"] is not None:
        line += f"  val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}%"
    return line + f"  {row['images_per_second']:.0f} img/s  {row['seconds']:.0f} s"


# --- trained models: evaluation, ensembles, prediction --------------------------------------

@dataclass
class TrainedModel:
    model: object
    config: TrainConfig
    data: dict
    path: Path


def saved_config(meta: dict, path, **changes) -> TrainConfig:
    """The TrainConfig stored in checkpoint ``path``'s ``meta`` (with ``changes``); a
    setting of the wrong type or value is a CheckpointError naming the file."""
    try:
        return TrainConfig.from_dict({**meta["config"], **changes})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: its run's settings are invalid: "
                              f"{str(error).removeprefix('train: ')}") from None


def read_run_meta(path) -> dict:
    """The metadata of the checkpoint a run continues from, without reading its arrays
    (what the command line needs to rebuild the run's settings): it holds what resuming
    reads back, and its settings are valid."""
    meta = read_checkpoint_meta(path, require=RESUME_META)
    saved_config(meta, path, device="cpu")  # the run's GPU may be elsewhere
    return meta


def load_run_checkpoint(path):
    """The checkpoint to continue a run from, checked before any training: it holds what
    resuming reads back, its settings are valid and its weights finite. (Whether the
    continued run's --epochs leave anything to do is the resume policy's question.)"""
    checkpoint = load_checkpoint(path, require=RESUME_META)
    saved_config(checkpoint.meta, path, device="cpu")  # the run's GPU may be elsewhere
    require_finite(path, checkpoint)
    return checkpoint


def load_trained(path, device: str = "cpu") -> TrainedModel:
    """A model from a training checkpoint (``checkpoint.npz`` or a snapshot); the stored
    weights' shapes are checked against the model before they are read."""
    meta = read_checkpoint_meta(path, require=("config", "data"))
    config = saved_config(meta, path, device=device)
    info = meta["data"]
    model = build_model(config, len(info["classes"]), info["in_channels"])
    shapes = {name: array.shape for name, array in model.state_dict().items()}
    checkpoint = load_checkpoint(path, require=("config", "data"), model_shapes=shapes)
    require_finite(path, checkpoint)
    try:
        model.load_state_dict(checkpoint.model)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    return TrainedModel(model.to(device).eval(), config, info, Path(path))


def evaluate_checkpoints(paths, dataset: str | None = None, data_dir=None, split="test",
                         batch_size: int = 256, device: str = "cpu", flip: bool = False) -> dict:
    """Accuracy of each checkpoint, and of the ensemble averaging their softmax outputs.

    ``flip`` also averages each model's outputs on the mirrored test images, which only
    makes sense for models trained with flips (not digits)."""
    members = [load_trained(path, device) for path in paths]
    if flip:
        unflipped = [str(m.path) for m in members
                     if "flip" not in parse_augment(m.config.augment, m.config.dataset)]
        if unflipped:
            raise ValueError(f"--flip averages over mirrored images, but "
                             f"{', '.join(unflipped)} was trained without flips (a mirrored "
                             f"digit is another picture); leave out --flip")
    first = members[0]
    for member in members[1:]:
        if member.data["classes"] != first.data["classes"]:
            raise ValueError(f"ensemble: {member.path} predicts classes {member.data['classes']}"
                             f", {first.path} predicts {first.data['classes']}")
    dataset = dataset or first.config.dataset
    data_dir = data_dir if data_dir is not None else first.config.data_dir
    rows, total = [], None
    cache = {}
    for member in members:
        stored = member.config.scale_max or member.config.image_size
        key = (dataset, split, stored)
        if key not in cache:
            cache[key] = load_dataset(dataset, split, data_dir, size=stored)
        images = cache[key]
        _, eval_tf = input_pipelines(member.config, images.images.shape[2],
                                     member.data["mean"], member.data["std"])
        loader = DataLoader(images, batch_size, shuffle=False, transform=eval_tf,
                            dtype=np.dtype(member.config.dtype))
        probabilities = predict_probabilities(member.model, loader, device, flip)
        rows.append({"checkpoint": str(member.path),
                     **scores(probabilities, loader_labels(loader))})
        total = probabilities if total is None else total + probabilities
    labels = loader_labels(loader)
    result = {"dataset": dataset, "split": split, "images": int(len(labels)), "flip": flip,
              "members": rows}
    if len(members) > 1:
        result["ensemble"] = scores(total / len(members), labels)
    return result


def read_image_file(path, in_channels: int) -> np.ndarray:
    """An image file as uint8 (C, H, W) with the checkpoint's channel count (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('predict: reading image files needs Pillow; '
                          'install it with: pip install -e ".[data]"') from None
    require_file(path, "predict: cannot read image", "an image file")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if in_channels == 1 else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"predict: cannot read image {path}: {error}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


#: a training mean below this says the training images are mostly dark background under
#: light strokes: MNIST's mean is 0.13 and Fashion-MNIST's 0.29, where photographs average
#: about 0.45 and dark ink on white paper far above 0.5
DARK_BACKGROUND_MEAN = 0.35
#: the ring of pixels taken for an image's background, as a fraction of its shorter side
#: (digits sit inside a margin: MNIST's is 4 pixels of 28)
BORDER_FRACTION = 0.1


def background_warning(image, training_mean, inverted: bool = False) -> str | None:
    """Why a prediction on ``image`` is likely wrong, or None: the model learnt light
    strokes on a dark background (``training_mean``, per channel in [0, 1], is low) but
    most of the image's border, its background, is light.

    ``image`` is uint8 (C, H, W) as the model gets it, after any inversion; ``inverted``
    says that one was asked for, which is then what to leave out."""
    if float(np.mean(training_mean)) >= DARK_BACKGROUND_MEAN:
        return None
    grey = np.asarray(image, dtype=np.float64).mean(axis=0)
    ring = max(1, int(min(grey.shape) * BORDER_FRACTION))
    border = np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(),
                             grey[ring:-ring, :ring].ravel(), grey[ring:-ring, -ring:].ravel()])
    if np.mean(border > 127.5) <= 0.5:
        return None
    trained = ("its background is light, but the model was trained on light strokes on a "
               "dark background, so the answer is likely wrong")
    if inverted:
        return f"with --invert {trained}; leave out --invert"
    return f"{trained}; for dark strokes on light paper add --invert"


def predict_files(checkpoints, files, device: str = "cpu", invert: bool = False,
                  top: int = 3) -> list[dict]:
    """Top classes for each image file, averaging the softmax of all ``checkpoints``; each
    row's ``warning`` names the file when its background is not the one the model learnt
    (see :func:`background_warning`), else is None."""
    members = [load_trained(path, device) for path in checkpoints]
    total = None
    warnings = {}
    for member in members:
        stored = member.data["stored_size"]
        batch = []
        for index, path in enumerate(files):
            image = read_image_file(path, member.data["in_channels"])
            if invert:  # dark strokes on white paper -> MNIST's white on black
                image = 255 - image
            reason = background_warning(image, member.data["mean"], invert)
            if reason is not None:
                warnings.setdefault(index, f"{path}: {reason}")
            resized = T.resize(image.transpose(1, 2, 0), (stored, stored))
            batch.append(np.clip(np.rint(resized), 0, 255).astype(np.uint8).transpose(2, 0, 1))
        _, eval_tf = input_pipelines(member.config, stored, member.data["mean"],
                                     member.data["std"])
        x = eval_tf(np.stack(batch).astype(np.float64) / 255.0, np.random.default_rng(0))
        x = np.ascontiguousarray(x, dtype=np.dtype(member.config.dtype))
        with no_grad():
            logits = member.model(tensor(x, device=device))
        probabilities = softmax(backend.to_numpy(logits.data))
        total = probabilities if total is None else total + probabilities
    total /= len(members)
    classes = members[0].data["classes"]
    results = []
    for index, (path, row) in enumerate(zip(files, total)):
        order = np.argsort(-row)[:top]
        results.append({"file": str(path),
                        "top": [{"class": classes[i], "probability": float(row[i])}
                                for i in order],
                        "warning": warnings.get(index)})
    return results
