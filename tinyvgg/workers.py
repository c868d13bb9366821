"""The CPU's cores, shared out by the ops themselves.

NumPy runs copies and elementwise work on one core; only its matrix products
(BLAS) start threads of their own. So tinyvgg's CPU ops split their work into
one part per core and run the parts at once, on threads: NumPy lets go of the
interpreter lock inside its loops and products, so the parts run in parallel,
and copies, transforms and products all use every core.

While an op runs on the CPU, BLAS is held to one thread (:func:`serial_blas`,
entered by ``Function.apply`` and ``Tensor.backward`` on the main thread), and
each part's products run on the part's own thread. Two reasons:

* a part that calls a multi-threaded product would start threads on cores
  the other parts are using;
* OpenBLAS's threads keep spinning on their cores for a while after each
  product, waiting for the next one, so even a product in a *previous* op
  takes the core a part was to run on: splitting Winograd's stages over image
  halves made the VGG-16 step slower until BLAS was held to one thread in every
  op (benchmarks/results/design-measurements-cpu.md).

Parts are cut along axes whose items are computed independently (images, rows
or columns of a product, Winograd's transformed positions, the shifted GEMMs'
taps), never through a sum; the results are the same from run to run. A
different number of workers can change the last bit where the matrix-product
routine treats a part's edge rows differently.

Small work is not split (:data:`MIN_PART_VALUES`, :data:`MIN_PART_FLOPS`):
handing a part to a thread costs more than it saves there.

The number of workers is the number of cores this process may run on, or
``TINYVGG_CPU_THREADS`` (read at import), or :func:`set_cpu_threads`. With 1,
every op runs on the calling thread, BLAS included.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np
from threadpoolctl import ThreadpoolController

CPU_THREADS_ENV = "TINYVGG_CPU_THREADS"

# Handing a part to a thread and waiting for it costs about a tenth of a millisecond
# (waking a thread on an idle core), as long as moving half a million values or doing
# tens of millions of flops (benchmarks/results/design-measurements-cpu.md). So a part
# is worth a thread only with at least this many values to move, or flops to do:
MIN_PART_VALUES = 1 << 19
MIN_PART_FLOPS = 1 << 25



def _checked_count(value, where: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the number of CPU threads must be a whole number, "
                         f"got {value!r}") from None
    if isinstance(value, float) and value != count or count < 1:
        raise ValueError(f"{where}: the number of CPU threads must be at least 1, "
                         f"got {value!r}")
    return count


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_count = (_checked_count(os.environ[CPU_THREADS_ENV], f"environment variable {CPU_THREADS_ENV}")
          if os.environ.get(CPU_THREADS_ENV) else _available_cores())
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_in_part = threading.local()
_controller: ThreadpoolController | None = None
_blas_depth = 0          # serial_blas blocks the main thread is inside
_blas_limiter = None     # what restores BLAS's own setting when the outermost one ends


def cpu_threads() -> int:
    """How many threads the CPU ops split their work over."""
    return _count


def set_cpu_threads(count: int | None) -> None:
    """Split CPU work over ``count`` threads from now on (None: one per available core)."""
    global _count, _pool
    new = _available_cores() if count is None else _checked_count(count, "set_cpu_threads")
    with _pool_lock:
        if _pool is not None and new != _count:
            _pool.shutdown(wait=True)
            _pool = None
        _count = new


@contextmanager
def using_cpu_threads(count: int | None):
    """``with using_cpu_threads(1):`` sets the number of threads for the block only."""
    before = _count
    set_cpu_threads(count)
    try:
        yield
    finally:
        set_cpu_threads(before)


def _forget_pool_after_fork():
    # a forked child has none of the parent's threads: it starts a pool of its own
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_count - 1,
                                       thread_name_prefix="tinyvgg-cpu")
        return _pool


def parts(n: int, min_items: int = 1) -> list[slice]:
    """range(n) cut into at most :func:`cpu_threads` consecutive slices of nearly equal
    length, none shorter than ``min_items`` unless there is only one."""
    count = max(1, min(_count, n // max(1, min_items)))
    bounds = [n * i // count for i in range(count + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(count)]


def run(part, n: int, min_items: int = 1) -> None:
    """Call ``part(s)`` for each slice s of :func:`parts` (n, min_items), the slices at
    once on the worker threads (the first on the calling thread), and return when all
    are done. An exception in any part is raised here once every part has ended.
    Parts must write disjoint outputs. Called from inside a part, it runs serially."""
    slices = parts(n, min_items)
    if len(slices) == 1 or getattr(_in_part, "active", False):
        for s in slices:
            part(s)
        return

    def in_worker(s):
        _in_part.active = True
        try:
            part(s)
        finally:
            _in_part.active = False

    with serial_blas():  # BLAS's setting is the process's: set here, once, not per part
        futures = [_thread_pool().submit(in_worker, s) for s in slices[1:]]
        first_error = None
        try:
            in_worker(slices[0])
        except BaseException as error:  # the other parts still finish before it propagates
            first_error = error
        for future in futures:
            try:
                future.result()
            except BaseException as error:
                first_error = first_error or error
    if first_error is not None:
        raise first_error


def min_items(values_per_item: int = 0, flops_per_item: int = 0) -> int:
    """The fewest items a part should hold, for items that each move this many values or
    do this many flops: enough for MIN_PART_VALUES values or MIN_PART_FLOPS flops."""
    wanted = [-(-limit // per_item) for limit, per_item in
              ((MIN_PART_VALUES, values_per_item), (MIN_PART_FLOPS, flops_per_item))
              if per_item > 0]
    return min(wanted, default=1)


def run_over_first_axis(part, array) -> None:
    """:func:`run` over ``range(len(array))``, in parts of at least MIN_PART_VALUES of the
    array's values (a 0-d array is one part, ``...``: it takes no slice)."""
    if array.ndim == 0:
        part(...)
        return
    per_item = max(1, array.size // max(1, array.shape[0]))
    run(part, array.shape[0], min_items=min_items(values_per_item=per_item))


def matmul(a, b, out=None):
    """``a @ b`` for a 2-D ``a`` (M, K) and ``b`` (K, N), its rows (or, when ``a`` has
    fewer rows than ``b`` has columns, ``b``'s columns) split over the workers, in parts
    of at least MIN_PART_FLOPS; into ``out`` when given."""
    M, K = a.shape
    N = b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype=np.result_type(a, b))
    if M >= N:
        run(lambda s: np.matmul(a[s], b, out=out[s]), M,
            min_items=min_items(flops_per_item=2 * K * N))
    else:
        run(lambda s: np.matmul(a, b[:, s], out=out[:, s]), N,
            min_items=min_items(flops_per_item=2 * K * M))
    return out


def _blas_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


@contextmanager
def serial_blas():
    """Hold the BLAS libraries loaded so far to one thread inside the block; their
    settings come back when the outermost such block ends.

    Only the main thread changes the setting: OpenBLAS ignores a change of its thread
    count made from some other threads (measured with OpenBLAS 0.3.31), so a restore
    made there could leave BLAS at one thread for good. On other threads the block
    changes nothing: ops run there with BLAS as it is, correct but maybe slower."""
    global _blas_depth, _blas_limiter
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _blas_depth == 0:
        _blas_limiter = _blas_controller().limit(limits=1)
    _blas_depth += 1
    try:
        yield
    finally:
        _blas_depth -= 1
        if _blas_depth == 0:
            _blas_limiter.restore_original_limits()
            _blas_limiter = None


def op_scope(device: str):
    """The context an op's forward or backward runs in: :func:`serial_blas` on the CPU."""
    return serial_blas() if device == "cpu" else nullcontext()
