"""Weights in and out: ``.npz`` (NumPy) and ``.pth`` (PyTorch state_dict) files.

``save(model_or_state_dict, path)`` and ``load(path)`` pick the format from
the file's suffix. Loading never runs code from the file: ``.npz`` is read
with ``allow_pickle=False`` and ``.pth`` with ``torch.load(weights_only=True)``,
so a file from a stranger can hold only arrays. Files are written
atomically, so an interrupted save leaves the previous file intact.

The keys are PyTorch's dotted names (``features.0.weight``), so a
torchvision VGG ``.pth`` loads into the matching ``tinyvgg.models`` VGG::

    model = tinyvgg.models.vgg16()
    model.load_state_dict(tinyvgg.load("vgg16-397923af.pth"))
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from .. import backend
from .fileio import atomic_writer, read_npz, require_file

NUMPY_SUFFIXES = (".npz",)
TORCH_SUFFIXES = (".pth", ".pt")


def _format_of(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix in NUMPY_SUFFIXES:
        return "npz"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    raise ValueError(f"{action} {path}: unknown weights format {suffix or '(no suffix)'!r}; "
                     f"use .npz (NumPy) or .pth/.pt (PyTorch state_dict)")


def _import_torch(path: Path, action: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{action} {path}: .pth files need PyTorch (pip install torch); "
                          "the .npz format needs nothing but NumPy") from None
    return torch


def _state_arrays(model_or_state_dict, path: Path) -> "OrderedDict[str, np.ndarray]":
    state = model_or_state_dict
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if not hasattr(state, "items"):
        raise TypeError(f"save {path}: expected a Module or a state_dict (name -> array), "
                        f"got {type(model_or_state_dict).__name__}")
    arrays = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"save {path}: state_dict keys must be strings, got {key!r}")
        value = value.numpy() if hasattr(value, "numpy") else backend.to_numpy(value)
        arrays[key] = np.asarray(value)
        if arrays[key].dtype == object:
            raise TypeError(f"save {path}: {key} is not a numeric array")
    return arrays


def save(model_or_state_dict, path) -> Path:
    """Write a module's ``state_dict`` (or a state_dict itself) to ``.npz`` or ``.pth``."""
    path = Path(path)
    fmt = _format_of(path, "save")
    arrays = _state_arrays(model_or_state_dict, path)
    if fmt == "npz":
        with atomic_writer(path) as f:
            np.savez(f, **arrays)
    else:
        torch = _import_torch(path, "save")
        tensors = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)))
                              for k, v in arrays.items())
        with atomic_writer(path) as f:
            torch.save(tensors, f)
    return path


def load(path) -> "OrderedDict[str, np.ndarray]":
    """Read a state_dict (name -> NumPy array) from ``.npz`` or ``.pth`` without running code."""
    path = Path(path)
    fmt = _format_of(path, "load")
    require_file(path, "load", f"a weights file ({path.suffix})")
    if fmt == "npz":
        return read_npz(path, "load")
    return _load_torch(path)


def _load_torch(path: Path):
    torch = _import_torch(path, "load")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, ... by cause
        raise ValueError(f"load {path}: cannot be read as a weights-only PyTorch file "
                         f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
    # Training checkpoints often wrap the weights: {"state_dict": {...}} or {"model": {...}}.
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"load {path}: expected a state_dict (name -> tensor), "
                         f"got {type(obj).__name__}")
    return OrderedDict((key, value.detach().cpu().numpy()) for key, value in obj.items())
