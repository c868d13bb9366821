"""A run's settings: :class:`TrainConfig`, the augmentations and schedules it may name,
the ``tinyvgg train`` command that makes it, and the one a checkpoint stores."""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .. import backend
from ..io.checkpoint import CheckpointError

DIGIT_DATASETS = ("mnist", "fashion-mnist")
AUGMENTATIONS = ("crop", "flip", "jitter", "rgb", "scale", "rotate", "hue-sat", "erase")
#: augmentations that change colours, which grey images do not have
RGB_AUGMENTATIONS = ("rgb", "hue-sat")
SCHEDULES = ("constant", "step", "plateau", "cosine", "warm-restarts")
#: schedules that a resumed run can carry past its planned number of epochs
EXTENDABLE_SCHEDULES = ("constant", "step", "plateau", "warm-restarts")


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
    label_smoothing: float = 0.0   # the training loss's; validation and test losses have none
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
    warmup_epochs: float = 0.0     # the rate rises linearly to the schedule's over these
    recalibrate_bn: bool = False   # batch-norm statistics averaged over the training images
    swa_epochs: int = 0            # the final weights: the mean over these last epochs' steps
    swa_lr: float | None = None    # the rate held during them (None: the schedule's)
    step_size: int | None = None   # step: epochs between divisions by 10
    patience: int = 2              # plateau: epochs without improvement before dividing
    restart_period: int | None = None  # warm restarts: epochs of the first cycle
    restart_mult: int = 1
    augment: str = "auto"
    rotate_degrees: float = 20.0   # --augment rotate: angles drawn from [-d, d] (the lecture's 20)
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    prefetch: int = 2
    # several ranks (mpiexec -n N): batch norm over the global batch, the size of the
    # gradient buckets, and whether their sums start during backward
    sync_bn: bool = False
    bucket_mb: float = 25.0
    overlap: bool = True
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
        if not 0 <= self.label_smoothing < 1:
            fail(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
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
        if not (math.isfinite(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs):
            fail(f"--warmup-epochs must be at least 0 and less than --epochs "
                 f"({self.epochs}), got {self.warmup_epochs}")
        if not 0 <= self.swa_epochs <= self.epochs:
            fail(f"--swa-epochs must be between 0 and --epochs ({self.epochs}), "
                 f"got {self.swa_epochs}")
        if self.swa_lr is not None:
            if not (math.isfinite(self.swa_lr) and self.swa_lr > 0):
                fail(f"--swa-lr must be a positive number, got {self.swa_lr}")
            if not self.swa_epochs:
                fail("--swa-lr sets the rate of the averaged epochs; give --swa-epochs too")
        if self.schedule == "plateau" and self.val_size == 0:
            fail("the plateau schedule watches validation accuracy: it needs --val-size > 0")
        if self.limit is not None and self.limit < 1:
            fail(f"limit must be positive, got {self.limit}")
        if self.image_size < 32:
            fail(f"image size must be at least 32 (five 2x2 max-pools), got {self.image_size}")
        if self.nesterov and self.momentum == 0:
            fail("Nesterov momentum needs --momentum > 0")
        if self.recalibrate_bn and not self.batch_norm:
            fail("--recalibrate-bn recomputes batch-norm statistics, which --no-batch-norm "
                 "leaves out")
        if self.sync_bn and not self.batch_norm:
            fail("--sync-bn synchronises batch norm, which --no-batch-norm leaves out")
        if not (math.isfinite(self.bucket_mb) and self.bucket_mb > 0):
            fail(f"--bucket-mb must be a positive number, got {self.bucket_mb}")
        augments = parse_augment(self.augment, self.dataset)
        if not (math.isfinite(self.rotate_degrees) and 0 < self.rotate_degrees <= 180):
            fail(f"--rotate-degrees must be in (0, 180], got {self.rotate_degrees}")
        if self.rotate_degrees != TrainConfig.rotate_degrees and "rotate" not in augments:
            fail(f"--rotate-degrees {self.rotate_degrees:g} sets the angles of --augment "
                 f"rotate, which this run does not use (--augment {self.augment})")
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
    def recalibrates_bn(self) -> bool:
        """Whether the run ends by recomputing its batch-norm statistics: when asked to, and
        when its weights are averaged (their mean was never run forward, so no statistics
        of it exist yet)."""
        return self.batch_norm and (self.recalibrate_bn or self.swa_epochs > 0)

    @property
    def output_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        bn = "_bn" if self.batch_norm else ""
        return Path("runs") / f"{self.dataset}-{self.model}{bn}-w{self.width:g}-s{self.seed}"


def parse_augment(text: str, dataset: str) -> tuple[str, ...]:
    """``auto``, ``none`` or a comma list of crop, flip, jitter, rgb, scale, rotate,
    hue-sat, erase (hue-sat and rgb only for RGB images, not for the grey digits)."""
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
    colour = [part for part in chosen if part in RGB_AUGMENTATIONS]
    if colour and dataset in DIGIT_DATASETS:
        raise ValueError(f"train: --augment {', '.join(colour)} changes colours and needs RGB "
                         f"images; {dataset}'s images are grey")
    return chosen


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


def saved_config(meta: dict, path, **changes) -> TrainConfig:
    """The TrainConfig stored in checkpoint ``path``'s ``meta`` (with ``changes``); a
    setting of the wrong type or value is a CheckpointError naming the file."""
    try:
        return TrainConfig.from_dict({**meta["config"], **changes})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: its run's settings are invalid: "
                              f"{str(error).removeprefix('train: ')}") from None
