"""Training checkpoints: everything needed to continue a run exactly, in one ``.npz``.

A checkpoint holds three things, all as plain arrays so that reading it
never runs code (``np.load(allow_pickle=False)``):

* ``model/<name>``: the model's ``state_dict`` (weights and batch-norm statistics);
* ``optimizer/<key>``: the optimiser's state (velocities, step counts, hyperparameters);
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
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fileio import atomic_writer

FORMAT = "tinyvgg-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable tinyvgg checkpoint."""


@dataclass
class Checkpoint:
    model: "OrderedDict[str, np.ndarray]"
    optimizer: dict
    meta: dict = field(default_factory=dict)


def save_checkpoint(path, model_state, optimizer_state, meta: dict) -> Path:
    """Write a checkpoint atomically; ``meta`` must be JSON-serialisable."""
    path = Path(path)
    arrays = {f"model/{k}": np.asarray(v) for k, v in model_state.items()}
    arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in optimizer_state.items()})
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


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path}: not a .npz archive (a partial or foreign "
                              f"file?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"checkpoint {path}: unreadable ({error})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"checkpoint {path}: no 'meta' entry; this looks like a weights "
                              f"file, load it with tinyvgg.load() instead")
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}: its metadata is not JSON ({error})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {meta.get('format')!r}, "
                              f"expected {FORMAT!r}")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"checkpoint {path}: version {meta['version']} is newer than "
                              f"this tinyvgg reads ({VERSION}); upgrade tinyvgg")
    model = OrderedDict((k[len("model/"):], v) for k, v in arrays.items()
                        if k.startswith("model/"))
    optimizer = {k[len("optimizer/"):]: v for k, v in arrays.items()
                 if k.startswith("optimizer/")}
    if not model:
        raise CheckpointError(f"checkpoint {path}: holds no model weights")
    return Checkpoint(model, optimizer, meta)
