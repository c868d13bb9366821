"""Devices and their array libraries.

Every tensor lives on one device. ``"cpu"`` arrays are NumPy arrays. The
rest of the engine asks this module which device an array is on and never
checks array types itself, so a second backend (CuPy arrays for ``"cuda"``)
is added here and in each op's device-specific code, not in the public API.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

DEVICES = ("cpu",)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates and frees the same large arrays (im2col
    matrices of up to hundreds of MB) over and over. By default glibc hands
    every block over 32 MB back to the kernel when it is freed, and the next
    allocation of that size pays a page fault for every 4 KiB page it
    touches: on the machines measured, that made filling a fresh array about
    three times slower than refilling a kept one. Raising the mmap and trim
    thresholds to 1 GiB keeps the blocks in the process heap; the cost is a
    resident size that stays at its peak, like a GPU caching allocator's.
    Set TINYVGG_RETURN_FREED_MEMORY=1 to keep glibc's defaults.
    Returns True when the thresholds were set (Linux with glibc only).
    """
    if os.environ.get("TINYVGG_RETURN_FREED_MEMORY") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    one_gib = ctypes.c_int(1 << 30)
    return bool(mallopt(M_MMAP_THRESHOLD, one_gib)) and bool(mallopt(M_TRIM_THRESHOLD, one_gib))


KEEPS_FREED_MEMORY = keep_freed_memory()


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
