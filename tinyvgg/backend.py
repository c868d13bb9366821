"""Devices and their array libraries.

Every tensor lives on one device: ``"cpu"`` arrays are NumPy arrays,
``"cuda"`` arrays are CuPy arrays on the current GPU. The rest of the
engine asks this module which device an array is on and never checks array
types itself. CuPy is imported only when a GPU is asked for, so the CPU
path needs nothing but NumPy.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

DEVICES = ("cpu", "cuda")


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


class DeviceUnavailableError(RuntimeError):
    """``"cuda"`` was asked for on a machine that cannot provide it."""


GPU_INSTALL_HINT = ('install the GPU extra with  pip install -e ".[gpu]"  (CuPy for CUDA 12; '
                    'for CUDA 13 use  pip install cupy-cuda13x)')


def cupy_module():
    """CuPy, once it is known to see a GPU; a clear error saying what is missing otherwise."""
    try:
        import cupy
    except ImportError:
        raise DeviceUnavailableError(f"device 'cuda': CuPy is not installed; "
                                     f"{GPU_INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # no driver, or a driver too old for this CuPy
        raise DeviceUnavailableError(f"device 'cuda': no usable NVIDIA GPU was found "
                                     f"(CUDA runtime: {error})") from None
    if count == 0:
        raise DeviceUnavailableError("device 'cuda': no NVIDIA GPU was found")
    return cupy


def gpu_available() -> bool:
    try:
        cupy_module()
        return True
    except DeviceUnavailableError:
        return False


def check_device(device: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device: expected a string such as 'cpu' or 'cuda', got {device!r}")
    if device not in DEVICES:
        hint = " (the current GPU is 'cuda'; select another with CUDA_VISIBLE_DEVICES)" \
            if device.startswith("cuda:") else ""
        raise ValueError(f"device: unknown device {device!r}; available devices: "
                         f"{', '.join(DEVICES)}{hint}")
    if device == "cuda":
        cupy_module()
    return device


def _is_cupy(array) -> bool:
    return type(array).__module__.startswith("cupy")


def device_of(array) -> str:
    if isinstance(array, np.ndarray):
        return "cpu"
    if _is_cupy(array):
        return "cuda"
    raise TypeError(f"tensor data must be a NumPy (cpu) or CuPy (cuda) array, "
                    f"got {type(array).__name__}")


def device_of_or_none(value):
    """The device of an array, or None for anything else (lists, numbers)."""
    try:
        return device_of(value)
    except TypeError:
        return None


def as_array(value):
    """``value``, with a NumPy scalar (``np.float64(2.0)``) made a 0-d array.

    NumPy returns scalars, not 0-d arrays, from arithmetic on 0-d arrays
    (``a * b``, ``np.tanh(a)``, ``a + b``); tensors and their gradients
    always hold arrays. (CuPy returns 0-d arrays.)"""
    return np.asarray(value) if isinstance(value, np.generic) else value


def array_module(array):
    """The array library (``numpy`` or ``cupy``) that operates on ``array``."""
    return np if device_of(array) == "cpu" else cupy_module()


def move(array, device: str):
    """``array`` on ``device`` (the same object when it is already there)."""
    check_device(device)
    if device_of(array) == device:
        return array
    if device == "cuda":
        return cupy_module().asarray(array)
    return array.get()


def to_numpy(array) -> np.ndarray:
    return array.get() if _is_cupy(array) else array


def common_device(op_name: str, devices) -> str:
    """The one device all inputs of an op share; mixing devices is an error."""
    unique = sorted(set(devices))
    if len(unique) > 1:
        raise ValueError(f"{op_name}: all inputs must be on the same device, got "
                         f"{' and '.join(unique)}; move them with .to(device) first")
    return unique[0] if unique else "cpu"
