"""Our CUDA kernels: ``kernels/<file>.cu`` compiled at first use with CuPy's RawModule.

Each ``.cu`` file is CUDA C++ that NVRTC compiles without system headers: its
only ``#include`` is of our own headers beside it (``common.cuh`` and ``tiles.cuh``, the
device code several files share), found through the include path
``--include-path=<kernels folder>`` that :func:`compile_options` gives NVRTC.
CuPy's disk cache is keyed by the source text and the options alone, so the
options also carry a digest of those headers: a changed header recompiles the
files that include it. Kernels are templates over the element type::

    template <typename T>
    __global__ void relu_forward(const T* x, T* y, long long n) { ... }

and this module instantiates every one of them for ``float`` and
``double`` (found by scanning the source), so an op asks for
``function("activation", "relu_forward", x.dtype)``. Kernels that do not depend on
the element type are declared ``extern "C" __global__`` and asked for with
``dtype=None``. Compiled modules are cached in memory per process and on
disk by CuPy (``~/.cupy/kernel_cache``), so a kernel compiles once per
machine. A compile error names the ``.cu`` file and line.

Array arguments must be C-contiguous CuPy arrays: ops make them so
(``contiguous``) before launching. Sizes are passed as ``long long``.
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import numpy as np

from . import backend

PACKAGE_DIR = Path(__file__).resolve().parent


def source_dir() -> Path:
    """The folder of the ``.cu`` files: ``tinyvgg/kernels/`` when the package is installed
    (setup.py ships them there), the top-level ``kernels/`` beside the package in a clone."""
    for folder in (PACKAGE_DIR / "kernels", PACKAGE_DIR.parent / "kernels"):
        if (folder / "conv3x3.cu").is_file():
            return folder
    raise FileNotFoundError(f"CUDA kernel sources not found: neither {PACKAGE_DIR / 'kernels'} "
                            f"(an installed package) nor {PACKAGE_DIR.parent / 'kernels'} "
                            "(a clone) holds them")

CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
THREADS = 256  # threads per block for one-thread-per-element kernels

# a kernel may ask for registers to be shared out with __launch_bounds__(threads, blocks)
_BOUNDS = r"(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?"   # one level of ( )
_TEMPLATED = re.compile(r"template\s*<\s*typename\s+T\s*>\s*__global__\s+void\s+" + _BOUNDS
                        + r"(\w+)\s*\(")
_PLAIN = re.compile(r'extern\s+"C"\s+__global__\s+void\s+' + _BOUNDS + r"(\w+)\s*\(")


class KernelCompileError(RuntimeError):
    """A ``.cu`` file failed to compile; the message gives its path and line."""


def source_path(file: str):
    path = source_dir() / f"{file}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"CUDA kernel file {path} not found")
    return path


def headers_digest(folder) -> str:
    """A digest of the headers (``*.cuh``) in ``folder``, the kernels' include directory."""
    digest = hashlib.sha256()
    for header in sorted(Path(folder).glob("*.cuh")):
        digest.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def compile_options(path) -> tuple[str, ...]:
    """NVRTC's options for the source at ``path``: C++17, the source's folder as the include
    path (where ``common.cuh`` is), and the digest of the headers there, so that CuPy's disk
    cache, keyed by source and options only, does not reuse a binary built with an older
    header."""
    folder = Path(path).resolve().parent
    return ("-std=c++17", f"--include-path={folder}",
            f"-DTINYVGG_HEADERS_DIGEST=0x{headers_digest(folder)}")


def kernel_names(code: str) -> tuple[list[str], list[str]]:
    """(templated kernels, plain extern "C" kernels) declared in a source."""
    return _TEMPLATED.findall(code), _PLAIN.findall(code)


def instantiations(code: str) -> list[str]:
    """The names NVRTC is asked to compile: each template for float and double."""
    templated, plain = kernel_names(code)
    return [f"{name}<{ctype}>" for name in templated for ctype in CTYPES.values()] + plain


def _located(log: str, path) -> str:
    """NVRTC names the source after a temporary file: point at ours instead (an error in
    an included header already names the header's own path)."""
    return re.sub(r"[^\s:()]*\.cu\((\d+)\)", lambda m: f"{path}:{m.group(1)}", log)


@functools.lru_cache(maxsize=None)
def module(file: str):
    cupy = backend.cupy_module()
    path = source_path(file)
    code = path.read_text()
    raw = cupy.RawModule(code=code, options=compile_options(path),
                         name_expressions=instantiations(code))
    try:
        raw.compile()
    except cupy.cuda.compiler.CompileException as error:
        raise KernelCompileError(f"compiling {path} failed:\n"
                                 f"{_located(str(error), path)}") from None
    return raw


@functools.lru_cache(maxsize=None)
def function(file: str, name: str, dtype=None):
    """The compiled kernel ``name`` of ``kernels/<file>.cu`` for ``dtype`` (None: not templated)."""
    raw = module(file)
    if dtype is None:
        return raw.get_function(name)
    dtype = np.dtype(dtype)
    if dtype not in CTYPES:
        raise TypeError(f"{file}.cu {name}: kernels exist for float32 and float64, got {dtype}")
    return raw.get_function(f"{name}<{CTYPES[dtype]}>")


def blocks_for(n: int, threads: int = THREADS) -> int:
    return max(1, (int(n) + threads - 1) // threads)


def launch(file: str, name: str, dtype, grid, block, args, shared_mem: int = 0) -> None:
    """Run a kernel. Python ints become ``long long`` and Python floats the kernel's
    element type ``T`` (float32 for kernels that are not templated); NumPy scalars
    (``np.uint64(seed)``) and arrays are passed as they are."""
    element = np.dtype(dtype).type if dtype is not None else np.float32
    converted = tuple(np.int64(a) if type(a) is int else element(a) if type(a) is float else a
                      for a in args)
    grid = grid if isinstance(grid, tuple) else (int(grid),)
    block = block if isinstance(block, tuple) else (int(block),)
    function(file, name, dtype)(grid, block, converted, shared_mem=shared_mem)


def launch_elementwise(file: str, name: str, dtype, n: int, *args) -> None:
    """One thread per element for ``n`` elements; the kernel's last parameter is ``n``."""
    if n:
        launch(file, name, dtype, blocks_for(n), THREADS, args + (n,))


def contiguous(array):
    """A C-contiguous CuPy array with the same values and shape (no copy when it already
    is one; ``ascontiguousarray`` alone makes a 0-d array 1-d)."""
    return backend.cupy_module().ascontiguousarray(array).reshape(array.shape)


def empty_like(array):
    """An uninitialised C-contiguous GPU array of the same shape and dtype."""
    return backend.cupy_module().empty(array.shape, dtype=array.dtype)


def empty(shape, dtype):
    return backend.cupy_module().empty(shape, dtype=dtype)


def zeros(shape, dtype):
    return backend.cupy_module().zeros(shape, dtype=dtype)
