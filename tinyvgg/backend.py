"""Devices and their array libraries.

Every tensor lives on one device. ``"cpu"`` arrays are NumPy arrays. The
rest of the engine asks this module which device an array is on and never
checks array types itself, so a second backend (CuPy arrays for ``"cuda"``)
is added here and in each op's device-specific code, not in the public API.
"""
from __future__ import annotations

import numpy as np

DEVICES = ("cpu",)


def check_device(device: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu', got {device!r}")
    if device == "cuda" or device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: this version of tinyvgg runs on the CPU only; "
                         f"available devices: {', '.join(DEVICES)}")
    if device not in DEVICES:
        raise ValueError(f"device: unknown device {device!r}; available devices: "
                         f"{', '.join(DEVICES)}")
    return device


def device_of(array) -> str:
    if isinstance(array, np.ndarray):
        return "cpu"
    raise TypeError(f"tensor data must be an array of a supported device, got {type(array).__name__}")


def array_module(array):
    """The array library (``numpy``) that operates on ``array``."""
    device_of(array)
    return np


def move(array, device: str):
    """``array`` on ``device`` (the same object when it is already there)."""
    check_device(device)
    return array


def to_numpy(array) -> np.ndarray:
    return array


def common_device(op_name: str, devices) -> str:
    """The one device all inputs of an op share; mixing devices is an error."""
    unique = sorted(set(devices))
    if len(unique) > 1:
        raise ValueError(f"{op_name}: all inputs must be on the same device, got {unique}")
    return unique[0] if unique else "cpu"
