"""Training checkpoints: everything needed to continue a run exactly, in one ``.npz``.

A checkpoint holds three things, and a fourth for some runs, all as plain
arrays so that reading it never runs code (see
:class:`tinyvgg.io.fileio.NpzReader`):

* ``model/<name>``: the model's ``state_dict`` (weights and batch-norm statistics);
* ``optimizer/<key>``: the optimiser's state (velocities, step counts, hyperparameters);
* ``average/<key>``: for a run that averages its weights, the running mean so far
  (:class:`tinyvgg.optim.WeightAverage`'s state);
* ``meta``: one JSON string with the run's configuration, where it stands
  (epoch, batch), the scheduler's state, the metrics so far and the format tag.

The random state needs no arrays: every random draw of a run (shuffling,
augmentation, dropout masks) is a pure function of ``(seed, epoch, batch)``,
so knowing where the run stands is knowing its random state.

Files are written atomically (temporary file, fsync, rename): a crash or a
full disk mid-write leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fileio import NpzReader, atomic_writer, require_file

FORMAT = "tinyvgg-checkpoint"
VERSION = 1
CHECKPOINT_FILE = "a checkpoint file (.npz)"


class CheckpointError(ValueError):
    """A file that is not a readable tinyvgg checkpoint."""


@dataclass
class Checkpoint:
    model: "OrderedDict[str, np.ndarray]"
    optimizer: dict
    meta: dict = field(default_factory=dict)
    average: dict = field(default_factory=dict)


def save_checkpoint(path, model_state, optimizer_state, meta: dict,
                    average_state=None) -> Path:
    """Write a checkpoint atomically; ``meta`` must be JSON-serialisable."""
    path = Path(path)
    arrays = {f"model/{k}": np.asarray(v) for k, v in model_state.items()}
    arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in optimizer_state.items()})
    arrays.update({f"average/{k}": np.asarray(v) for k, v in (average_state or {}).items()})
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"save_checkpoint: {key} is an object array, which .npz can "
                            f"only hold by pickling")
    document = json.dumps({"format": FORMAT, "version": VERSION, **meta}, allow_nan=True)
    arrays["meta"] = np.array(document)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_writer(path) as f:
        f.write(buffer.getbuffer())
    return path


def is_checkpoint(archive_keys) -> bool:
    keys = list(archive_keys)
    return "meta" in keys and any(k.startswith("model/") for k in keys)


#: the meta entries resuming a run reads back
RESUME_META = ("config", "epoch", "batch", "scheduler", "history", "sums")


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _run_data(value) -> bool:
    if not (isinstance(value, dict) and isinstance(value.get("classes"), list)
            and value["classes"] and all(isinstance(c, str) for c in value["classes"])
            and _count(value.get("in_channels")) and value["in_channels"] > 0
            and _count(value.get("stored_size")) and value["stored_size"] > 0):
        return False
    per_channel = [value.get("mean"), value.get("std")]
    return all(isinstance(v, list) and len(v) == value["in_channels"]
               and all(_real(x) for x in v) for v in per_channel) and min(value["std"]) > 0


#: each entry train() writes: (its check, what it must be)
META_CHECKS = {
    "config": (lambda v: isinstance(v, dict), "an object (the run's settings)"),
    "epoch": (_count, "a whole number >= 0"),
    "batch": (_count, "a whole number >= 0"),
    "scheduler": (lambda v: isinstance(v, dict), "an object (the scheduler's state)"),
    "history": (lambda v: isinstance(v, list) and all(
        isinstance(row, dict) and _count(row.get("epoch")) and _real(row.get("lr"))
        and all(x is None or _real(x) for x in row.values()) for row in v),
        "a list of objects, one per epoch, each with its epoch, lr and other figures "
        "(numbers or null)"),
    "sums": (lambda v: isinstance(v, dict) and _real(v.get("loss"))
             and _count(v.get("correct")) and _count(v.get("count")),
             "an object with loss, correct and count"),
    "data": (_run_data, "an object with classes (a list of names), in_channels and "
                        "stored_size (positive), and mean and std (one number per channel, "
                        "std > 0)"),
    "wall_seconds": (lambda v: _real(v) and v >= 0, "a number of seconds >= 0"),
    # written into the last checkpoint of a finished run, which it marks as complete
    "test": (lambda v: v is None or (isinstance(v, dict) and _real(v.get("accuracy"))
                                     and _real(v.get("loss"))),
             "null or an object with the test accuracy and loss"),
}


def _shown(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate_checkpoint_meta(meta, path, require=()) -> dict:
    """``meta`` as read from checkpoint ``path``, checked: the format and version, the
    entries in ``require`` present, every entry train() writes (:data:`META_CHECKS`) of
    the right type where present, and the position (epoch, batch) within the run its
    config describes. Raises :class:`CheckpointError` naming the file and the entry."""
    def fail(message):
        raise CheckpointError(f"checkpoint {path}: {message}")
    if not isinstance(meta, dict):
        fail(f"its metadata must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        fail(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    version = meta.get("version", 0)
    if not _count(version):
        fail(f"version must be a whole number, got {_shown(version)}")
    if version > VERSION:
        fail(f"version {version} is newer than this tinyvgg reads ({VERSION}); "
             f"upgrade tinyvgg")
    missing = [repr(key) for key in require if key not in meta]
    if missing:
        fail(f"its metadata has no {', '.join(missing)}, which tinyvgg train writes into "
             f"every checkpoint (a damaged or foreign file?)")
    for key, (check, expected) in META_CHECKS.items():
        if key in meta and not check(meta[key]):
            fail(f"meta entry {key!r} must be {expected}, got {_shown(meta[key])}")
    epochs = meta.get("config", {}).get("epochs")
    if "epoch" in meta and _count(epochs) and (meta["epoch"], meta.get("batch", 0)) > (epochs, 0):
        fail(f"it stands at epoch {meta['epoch']}, batch {meta.get('batch', 0)}, past the end "
             f"of its run (epochs = {epochs})")
    return meta


def require_checkpoint_file(path) -> Path:
    """``path`` when it is a file; else a clear error (a directory, nothing there, ...)."""
    return require_file(path, "checkpoint", CHECKPOINT_FILE, CheckpointError)


def _open(path):
    return NpzReader(path, "checkpoint", CheckpointError, CHECKPOINT_FILE)


def _read_meta(archive, path, require) -> dict:
    if "meta" not in archive.headers:
        raise CheckpointError(f"checkpoint {path}: no 'meta' entry; this looks like a weights "
                              f"file, load it with tinyvgg.load() instead")
    stored = archive.read("meta")
    if stored.shape != () or stored.dtype.kind != "U":
        raise CheckpointError(f"checkpoint {path}: its metadata must be one string of JSON, "
                              f"got a {stored.dtype} array of shape {stored.shape}")
    try:
        meta = json.loads(str(stored[()]))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}: its metadata is not JSON ({error})") from None
    return validate_checkpoint_meta(meta, path, require)


def read_checkpoint_meta(path, require=()) -> dict:
    """The checked metadata of a checkpoint (see :func:`validate_checkpoint_meta`), without
    reading its arrays."""
    with _open(path) as archive:
        return _read_meta(archive, path, require)


def load_checkpoint(path, require=(), model_shapes=None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles, and never
    allocates an array before its declared size is checked against the file
    (:class:`tinyvgg.io.fileio.NpzReader`).

    ``require`` names the meta entries the caller reads (see :data:`META_CHECKS`);
    ``model_shapes`` (name -> shape), the model's state, is compared with the stored
    weights' shapes before they are read.
    """
    with _open(path) as archive:
        meta = _read_meta(archive, path, require)
        if model_shapes is not None:
            archive.check_shapes({f"model/{k}": tuple(shape)
                                  for k, shape in model_shapes.items()})
        model = OrderedDict((k[len("model/"):], archive.read(k)) for k in archive.headers
                            if k.startswith("model/"))
        optimizer = {k[len("optimizer/"):]: archive.read(k) for k in archive.headers
                     if k.startswith("optimizer/")}
        average = {k[len("average/"):]: archive.read(k) for k in archive.headers
                   if k.startswith("average/")}
    if not model:
        raise CheckpointError(f"checkpoint {path}: holds no model weights")
    return Checkpoint(model, optimizer, meta, average)
