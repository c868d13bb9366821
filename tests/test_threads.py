"""tinyvgg.ops.threads: blocks of images spread over the cores, and the F(4x4, 3x3) rung
that uses it giving the same bits with one thread or several."""
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import randn
from tinyvgg.ops import threads
from tinyvgg.ops.conv_ladder import CONV3X3_CPU


@pytest.fixture
def always_parallel(monkeypatch):
    """Every call split into one-image blocks on the worker threads, on two at least."""
    monkeypatch.setattr(threads, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(threads, "BLOCK_BYTES", 1)
    monkeypatch.setattr(threads, "cpu_threads", lambda: max(2, os.cpu_count() or 1))


def test_blocks_cover_every_image_once_on_worker_threads(always_parallel):
    seen, names = [], set()
    lock = threading.Lock()

    def work(start, stop):
        with lock:
            seen.append((start, stop))
            names.add(threading.current_thread().name)
    threads.over_images(7, 100, work)
    assert sorted(i for start, stop in seen for i in range(start, stop)) == list(range(7))
    assert all(stop - start == 1 for start, stop in seen)
    assert all(name.startswith("tinyvgg-copy") for name in names)


def test_small_work_runs_once_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(threads, "cpu_threads", lambda: 2)
    calls = []
    threads.over_images(5, 1000, lambda start, stop: calls.append(
        (start, stop, threading.current_thread() is threading.main_thread())))
    assert calls == [(0, 5, True)]


def test_blocks_hold_about_block_bytes_and_every_thread_gets_work(monkeypatch):
    monkeypatch.setattr(threads, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(threads, "cpu_threads", lambda: 2)
    blocks = []
    threads.over_images(10, threads.BLOCK_BYTES // 3, lambda start, stop: blocks.append(
        (start, stop)))
    assert sorted(blocks) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    blocks.clear()
    threads.over_images(10, 1, lambda start, stop: blocks.append((start, stop)))
    assert sorted(blocks) == [(0, 5), (5, 10)]  # one block per thread, not one in all


def test_an_exception_in_a_block_reaches_the_caller(always_parallel):
    def work(start, stop):
        if start == 3:
            raise ValueError("block 3 failed")
    with pytest.raises(ValueError, match="block 3 failed"):
        threads.over_images(6, 100, work)


def test_a_forked_child_starts_its_own_workers(always_parallel):
    threads.over_images(4, 100, lambda start, stop: None)  # the parent's pool exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a pool inherited without its threads would hang here
        total = []
        threads.over_images(4, 100, lambda start, stop: total.append(stop - start))
        os.write(write, str(sum(total)).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"4" and status == 0


@pytest.mark.parametrize("shape, c_out", [((5, 16, 8, 12), 8), ((3, 8, 7, 5), 4)])
def test_winograd4x4_gives_the_same_bits_on_one_thread_and_several(monkeypatch, shape,
                                                                    c_out):
    """The copies run per image on the worker threads; the results do not change."""
    x, w = randn(0, shape, np.float32), randn(1, (c_out, shape[1], 3, 3), np.float32)
    b, g = randn(2, (c_out,), np.float32), randn(3, (shape[0], c_out) + shape[2:], np.float32)
    rung = CONV3X3_CPU["winograd4x4"]

    def run():
        y, saved = rung.forward(x, w, b, True, True)
        return (y,) + rung.backward(SimpleNamespace(**saved), g, True, True, True)
    monkeypatch.setattr(threads, "cpu_threads", lambda: 1)
    one = run()
    monkeypatch.setattr(threads, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(threads, "BLOCK_BYTES", 1)
    monkeypatch.setattr(threads, "cpu_threads", lambda: 3)
    for mine, reference in zip(run(), one):
        np.testing.assert_array_equal(mine, reference)
