"""``tinyvgg experiment NAME``: the lecture experiments on backprop, as commands.

Each experiment is a function ``run(out, seed=0, device="cpu", log=print) -> dict``
in a module of this package. It prints its table through ``log``, writes its
figure(s) into the folder ``out`` and returns its numbers (JSON-friendly: the
figure paths under ``"figures"``); the tests assert those numbers.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from ..io.fileio import writable_folder

#: name -> (module in this package, function, what the experiment teaches)
EXPERIMENTS = {
    "init": ("init", "run_mlp",
             "why initialisation matters: activation and gradient statistics of a 10-layer, "
             "500-unit net under N(0, 0.01), Xavier, He, and the slides' He typo"),
    "init-vgg": ("init", "run_vgg",
                 "the same statistics, layer by layer, in a real VGG at initialisation, "
                 "with and without batch norm"),
    "receptive-field": ("receptive_field", "run",
                        "stacked 3x3 convolutions see 3x3, 5x5, 7x7: the effective receptive "
                        "field by backprop, and every VGG-16 layer's"),
    "memory": ("memory", "run",
               "where a training step's memory goes: bytes saved for backward per layer, "
               "measured peak against the summary's estimate"),
    "graph": ("graph", "run",
              "the autograd graph of a small VGG as Graphviz dot: op, shape, dtype, device "
              "and saved bytes per node"),
    "profile": ("profile", "run",
                "forward and backward time per op and per layer of one training step"),
    "dense-eval": ("dense", "run",
                   "the VGG paper's dense evaluation: FC layers as convolutions, a class-score "
                   "map on larger images, and multi-scale testing"),
    "augment": ("augment", "run",
                "what the network sees: training images under every --augment and the data "
                "set's default pipeline (--dataset, --data-dir)"),
}

#: options of ``tinyvgg experiment`` that only some experiments take
DATA_OPTIONS = ("dataset", "data_dir")


def seeded_vgg_batch(config: str, width: float, classes: int, batch: int, size: int,
                     seed: int, device: str):
    """(model, images, labels): a VGG with the compact head whose weights are drawn from
    ``seed``, in training mode on ``device``, and a batch of unit-Gaussian float32 RGB
    images (a tensor on ``device``) with random labels, drawn next from the same generator."""
    import numpy as np

    from .. import backend
    from ..models import vgg
    from ..tensor import tensor
    backend.check_device(device)
    rng = np.random.default_rng(seed)
    model = vgg(config, num_classes=classes, width=width, head="compact", generator=rng)
    model.to(device).train()
    images = tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32),
                    device=device)
    return model, images, rng.integers(0, classes, batch)


def default_out(name: str) -> Path:
    """Where an experiment's figures go unless told: beside the training runs, in the
    user's folder rather than in the repository."""
    return Path("runs") / f"experiment-{name}"


def run(name: str, out=None, seed: int = 0, device: str = "cpu", log=print,
        **options) -> dict:
    """Run the experiment ``name`` (see :data:`EXPERIMENTS`), writing its figures to ``out``
    (default ``runs/experiment-<name>``). A folder that cannot take files is reported
    (:class:`tinyvgg.io.fileio.FolderNotWritableError`) before the experiment runs.
    ``options`` (:data:`DATA_OPTIONS`) go to the experiments that read a data set, and
    are refused by the others."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of "
                         f"{', '.join(EXPERIMENTS)}")
    module_name, function_name, _ = EXPERIMENTS[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    function = getattr(module, function_name)
    unknown = [key for key in options if key not in DATA_OPTIONS]
    if unknown:
        raise TypeError(f"run: unknown option {', '.join(unknown)}; the experiments take "
                        f"{', '.join(DATA_OPTIONS)}")
    taken = inspect.signature(function).parameters
    refused = [key for key in options if key not in taken]
    if refused:
        flags = ", ".join("--" + key.replace("_", "-") for key in refused)
        raise ValueError(f"experiment {name} reads no data set: {flags} is not for it")
    out = writable_folder(default_out(name) if out is None else out)
    return function(out, seed=seed, device=device, log=log, **options)
