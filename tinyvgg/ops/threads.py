"""Blocks of images spread over the CPU's cores, for NumPy's strided copies.

NumPy runs each array operation on one core; only BLAS uses them all. For a
pass over a large contiguous array that costs little, since memory, not the
core, is the limit. A strided copy whose contiguous runs are short is
different: NumPy's inner loop restarts for every run, so the core, not memory,
is the limit. Winograd's tile gathers are such copies, with runs of C values
(64 floats in VGG-16's first block), and two threads run them 2.4 times as
fast as one on the 2-core development machine (6.4 -> 2.6 ms for the 64x64x32x32
input's 36 tile copies), while a plain ReLU pass gains nothing (1.3 ms either
way). NumPy releases the GIL inside its copies and ufunc loops, so plain Python
threads are enough.

:func:`over_images` splits a batch into blocks of whole images and runs
``work(start, stop)`` on each, blocks shared among the threads. Each block
writes only its own images' part of the outputs, so the results are the same,
bit for bit, whatever the number of threads.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

#: blocks are about this many bytes of the work's largest array, so that what one
#: block's copies write is still in the core's cache when the next step reads it
BLOCK_BYTES = 1 << 20
#: below this many bytes in all, one call on the calling thread: a thread's start
#: and hand-over cost tens of microseconds
MIN_PARALLEL_BYTES = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_pid = None


def cpu_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _threads() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():  # a forked child has no workers
        _pool, _pool_pid = ThreadPoolExecutor(cpu_threads(), "tinyvgg-copy"), os.getpid()
    return _pool


def over_images(images: int, bytes_per_image: int, work) -> None:
    """Run ``work(start, stop)`` over ``range(images)`` in blocks of whole images of
    about BLOCK_BYTES (``bytes_per_image`` measures the work's largest array), on
    every core. Exceptions propagate; every block has finished when it returns."""
    total = images * bytes_per_image
    threads = cpu_threads()
    if threads == 1 or images == 1 or total < MIN_PARALLEL_BYTES:
        work(0, images)
        return
    per_block = max(1, min(BLOCK_BYTES // max(bytes_per_image, 1), -(-images // threads)))
    blocks = [(start, min(start + per_block, images)) for start in range(0, images, per_block)]
    for _ in _threads().map(lambda block: work(*block), blocks):
        pass
