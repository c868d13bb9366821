"""Our CUDA kernels compiled for the host with g++, so tests check them without a GPU.

``launch`` takes the arguments of ``tinyvgg.cuda.launch`` and runs the kernel of
``kernels/<file>.cu`` on NumPy arrays, every CUDA thread a fiber on the calling thread
(``prelude.h`` says how; inline PTX has C++ stand-ins there: the TF32 rung's rounding and
tensor-core product, and cp.async's copies to shared memory, which land at their wait).
``emulated_gpu(monkeypatch)`` points ``tinyvgg.cuda`` and the CuPy module the ops ask
for at NumPy and this launcher, so the ops' GPU host code (grids, splits, the order
of launches) runs with the kernels, on NumPy arrays.

What it checks that a GPU would not: every array argument is C-contiguous and of the
kernel's element type, a ``__syncthreads()`` that part of a block skips is an error, a
cp.async of a wrong size or alignment traps, and its copy lands only when its thread
waits for it (so shared memory read sooner, or with no barrier after every thread's
wait, is stale), and with ``check_races`` every launch runs again with blocks and
threads in reverse order and must give the same bits. What it cannot check: timing,
memory coalescing, races that no order of whole barrier phases exposes (fibers switch
only at barriers), and the GPU's own rounding (no fused multiply-adds here).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tinyvgg import backend, cuda

PRELUDE = Path(__file__).with_name("prelude.h")
CXX = shutil.which("g++")
_KERNEL = re.compile(r'(template\s*<\s*typename\s+T\s*>\s*)?(?:extern\s+"C"\s+)?'
                     r'__global__\s+void\s+(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?'
                     r'(\w+)\s*\(([^)]*)\)')
_TYPE_PARAMETER = re.compile(r"\bT\b")
_SCALARS = {"long long": ctypes.c_longlong, "unsigned long long": ctypes.c_ulonglong,
            "int": ctypes.c_int, "unsigned": ctypes.c_uint, "unsigned int": ctypes.c_uint,
            "float": ctypes.c_float, "double": ctypes.c_double}
_ELEMENT = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}


class HostLaunchError(RuntimeError):
    """A kernel trapped, or its barriers diverged, or an argument does not fit it."""


def kernel_signatures(code: str) -> dict:
    """{kernel name: (templated, [parameter types])} of every kernel in a source."""
    kernels = {}
    for templated, name, params in _KERNEL.findall(code):
        types = [re.sub(r"\s+", " ", p.replace("__restrict__", "")).strip()
                 for p in params.split(",")]
        types = [re.sub(r"\s*\w+$", "", p).strip() for p in types]  # drop the name
        kernels[name] = (bool(templated), types)
    return kernels


def _trampolines(kernels: dict) -> str:
    lines = []
    for name, (templated, types) in kernels.items():
        for ctype in ("float", "double") if templated else ("",):
            kernel = f"{name}<{ctype}>" if ctype else name
            concrete = [_TYPE_PARAMETER.sub(ctype, t) for t in types]
            call_args = ", ".join(f"*static_cast<{t}*>(a[{i}])" for i, t in enumerate(concrete))
            lines.append(
                f'extern "C" const char* launch_{name}{"_" + ctype if ctype else ""}'
                f"(const unsigned* d, void** a) {{\n"
                f"    static std::string error;\n"
                f"    error = host_cuda::launch({{d[0], d[1], d[2]}}, {{d[3], d[4], d[5]}},\n"
                f"                              [&] {{ {kernel}({call_args}); }});\n"
                f"    return error.c_str();\n}}")
    lines.append('extern "C" void set_reversed_order(int on) { host_cuda::reversed_order = on; }')
    return "\n".join(lines)


#: with this on, kernels are compiled with the prelude's portable fiber switch (ucontext)
#: instead of its x86-64 one, so that tests on x86-64 machines cover both
portable_switch = False


def library(file: str):
    """kernels/<file>.cu compiled for the host (once per source version), and its kernels."""
    return _library(file, portable_switch)


@functools.lru_cache(maxsize=None)
def _library(file: str, portable: bool):
    if CXX is None:
        raise RuntimeError("host_cuda: g++ is not installed")
    path = cuda.source_path(file)
    code = path.read_text()
    kernels = kernel_signatures(code)
    source = ("#define HOST_CUDA_UCONTEXT 1\n" if portable else "") + (
        f'#include "{PRELUDE}"\n#line 1 "{path}"\n{code}\n'
        f"#line 1 \"{file}-launchers\"\n{_trampolines(kernels)}\n")
    # the .cpp is compiled from a temporary folder: the source's own folder is the include
    # path of its #include "common.cuh", and the headers there are part of the version
    include_dir = path.resolve().parent
    digest = hashlib.sha256((PRELUDE.read_text() + source + cuda.headers_digest(include_dir)
                             ).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "tinyvgg-host-cuda"
    folder.mkdir(exist_ok=True)
    shared = folder / f"{file}-{digest}.so"
    if not shared.exists():
        # per-process names, then an atomic rename: parallel runs never read half a file
        cpp = folder / f"{file}-{digest}.{os.getpid()}.cpp"
        cpp.write_text(source)
        partial = folder / f"{file}-{digest}.{os.getpid()}.partial.so"
        result = subprocess.run([CXX, "-std=c++17", "-O1", "-ffp-contract=off", "-fPIC",
                                 "-shared", "-w", f"-I{include_dir}", "-o", str(partial),
                                 str(cpp)],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"host_cuda: g++ failed on {file}.cu:\n{result.stderr}")
        partial.replace(shared)
        cpp.unlink()
    return ctypes.CDLL(str(shared)), kernels


def _argument(kind: str, value, element, where: str):
    base = kind.replace("const ", "").strip()
    if base.endswith("*"):
        if value is None:
            return ctypes.c_void_p(None)
        if not isinstance(value, np.ndarray):
            raise HostLaunchError(f"{where}: expected an array for {kind}, got {type(value)}")
        pointee = base[:-1].strip()
        wanted = element if pointee == "T" else _ELEMENT.get(pointee)
        if wanted is not None and value.dtype != wanted:
            raise HostLaunchError(f"{where}: {kind} argument has dtype {value.dtype}, "
                                  f"expected {wanted}")
        if not value.flags.c_contiguous:
            raise HostLaunchError(f"{where}: {kind} argument is not C-contiguous "
                                  f"(shape {value.shape}, strides {value.strides})")
        return ctypes.c_void_p(value.ctypes.data)
    base = cuda.CTYPES[element] if base == "T" else base
    if base not in _SCALARS:
        raise HostLaunchError(f"{where}: no host type for the parameter type {kind!r}")
    return _SCALARS[base](value.item() if isinstance(value, np.generic) else value)


#: with this on, :func:`launch` runs every kernel twice, the second time with blocks and
#: threads in reverse order, and refuses results that differ (see ``prelude.h``)
check_races = False


def launch(file: str, name: str, dtype, grid, block, args, shared_mem: int = 0) -> None:
    """``tinyvgg.cuda.launch`` on the host: the same arguments, NumPy arrays for CuPy's."""
    lib, kernels = library(file)
    templated, types = kernels[name]
    element = np.dtype(dtype) if dtype is not None else np.dtype(np.float32)
    where = f"{file}.cu {name}"
    if len(args) != len(types):
        raise HostLaunchError(f"{where}: {len(args)} arguments for {len(types)} parameters")
    grid = tuple(grid) if isinstance(grid, tuple) else (int(grid),)
    block = tuple(block) if isinstance(block, tuple) else (int(block),)
    dims = (ctypes.c_uint * 6)(*(grid + (1,) * (3 - len(grid))),
                               *(block + (1,) * (3 - len(block))))
    values = [_argument(kind, value, element, where) for kind, value in zip(types, args)]
    pointers = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
    suffix = f"_{cuda.CTYPES[element]}" if templated else ""
    entry = getattr(lib, f"launch_{name}{suffix}")
    entry.restype = ctypes.c_char_p

    def run(reversed_order: bool) -> None:
        lib.set_reversed_order(int(reversed_order))
        error = entry(dims, pointers).decode()
        if error:
            raise HostLaunchError(f"{where}: {error}")
    if not check_races:
        run(False)
        return
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    run(False)
    first = [a.copy() for a in arrays]
    for array, saved in zip(arrays, before):
        array[...] = saved
    run(True)
    for i, (array, expected) in enumerate(zip(arrays, first)):
        if not np.array_equal(array, expected, equal_nan=array.dtype.kind == "f"):
            raise HostLaunchError(
                f"{where}: array argument {i} differs when blocks and threads run in "
                f"reverse order: a race (a missing __syncthreads(), or blocks writing "
                f"the same place)")


class DeviceArray(np.ndarray):
    """A NumPy array the engine takes for a GPU array (CuPy's ``get()`` included): with
    :func:`emulated_device`, tensors on "cuda" hold these, and ops take their GPU paths."""
    __module__ = "cupy.emulated"   # what backend recognises CuPy arrays by

    def get(self):
        return np.array(self)


def on_device(array) -> DeviceArray:
    return np.asarray(array).view(DeviceArray)


class NumpyAsCupy:
    """The CuPy calls the engine makes, answered by NumPy with DeviceArray results, on a
    device of compute capability ``compute_capability`` (8.0: TF32 tensor cores)."""
    compute_capability = "80"
    cuda = SimpleNamespace(Device=lambda: SimpleNamespace(
        id=0, compute_capability=NumpyAsCupy.compute_capability, synchronize=lambda: None))

    @staticmethod
    def asnumpy(array):
        return np.array(array)

    @staticmethod
    def asarray(array, dtype=None):
        """A copy for host data, as a transfer to the GPU makes; a GPU array stays itself."""
        if isinstance(array, DeviceArray) and (dtype is None or array.dtype == dtype):
            return array
        return on_device(np.array(array, dtype=dtype))

    def __getattr__(self, name):
        function = getattr(np, name)

        def on_device_result(*args, **kwargs):
            result = function(*args, **kwargs)
            return on_device(result) if isinstance(result, np.ndarray) else result
        return on_device_result


def emulated_gpu(monkeypatch) -> None:
    """Run the ops' GPU host functions (``conv3x3_cuda`` ...) on NumPy arrays, their
    kernels through :func:`launch`, for the rest of the test."""
    shim = NumpyAsCupy()
    monkeypatch.setattr(backend, "cupy_module", lambda: shim)
    monkeypatch.setattr(cuda, "launch", launch)
    monkeypatch.setattr(cuda, "contiguous", lambda array: on_device(
        np.ascontiguousarray(array).reshape(array.shape)))
    monkeypatch.setattr(cuda, "empty", lambda shape, dtype: on_device(np.empty(shape, dtype)))
    monkeypatch.setattr(cuda, "empty_like", lambda array: on_device(np.empty(array.shape,
                                                                             array.dtype)))
    monkeypatch.setattr(cuda, "zeros", lambda shape, dtype: on_device(np.zeros(shape, dtype)))


def emulated_device(monkeypatch) -> None:
    """:func:`emulated_gpu`, and the "cuda" device made of DeviceArrays: whole ops,
    models and training steps run their GPU code paths on the host."""
    emulated_gpu(monkeypatch)
    cpu_device_of = backend.device_of
    monkeypatch.setattr(backend, "device_of", lambda array: "cuda"
                        if isinstance(array, DeviceArray) else cpu_device_of(array))
